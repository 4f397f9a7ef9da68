"""A random-weight SDXL base of the exact architecture (2.57B UNet parameters), for the opt-in
full-size checks and the SDXL benchmark rows:

    python3 tools/reference/make_sdxl_model.py OUT_DIR
    SDFLOW_SDXL=OUT_DIR swift test -c release --filter FullSizeSDXL
    sdflow bench sdxl OUT_DIR/diffusers-f16

Writes OUT_DIR/diffusers-f16/ (a diffusers folder, float16, as stable-diffusion-xl-base-1.0's fp16
variant), OUT_DIR/sd_xl_random.safetensors (sd_xl_base_1.0.safetensors' layout, float16) and
OUT_DIR/reference.safetensors: one UNet call at 1024x1024 (128x128 latents, batch 2 as with CFG) in
float32 on the float16 weights.
"""
import json
import os
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

import fixtures_sdxl as fx
import tiny_models as tm

SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=2, transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816, norm_num_groups=32,
)
SDXL_VAE = dict(tm.SD15_VAE, scaling_factor=0.13025, sample_size=1024)
CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
              max_position_embeddings=77, hidden_act="gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=0,
              projection_dim=1280)


def main(out):
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    g = torch.Generator().manual_seed(2025)
    print("building random SDXL models ...", flush=True)
    unet = tm.randomize(UNet2DConditionModel(**SDXL_UNET), g)
    print("UNet parameters:", sum(p.numel() for p in unet.parameters()), flush=True)
    vae = tm.make_vae(SDXL_VAE, g)
    clip_l = tm.randomize(CLIPTextModel(CLIPTextConfig(**tm.SD15_CLIP)), g)
    clip_g = tm.randomize(CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G)), g)
    folder = os.path.join(out, "diffusers-f16")
    fx.save_folder(folder, unet, vae, clip_l, clip_g)
    print("wrote", folder, flush=True)
    fx.TINY_SDXL_UNET, fx.TINY_SDXL_VAE = SDXL_UNET, SDXL_VAE  # the single-file writer's configs
    fx.write_single_file(os.path.join(out, "sd_xl_random.safetensors"), unet, vae, clip_l, clip_g)
    g = torch.Generator().manual_seed(2026)
    ref = {"unet.sample": torch.randn(2, 4, 128, 128, generator=g), "unet.timesteps": torch.tensor([999.0, 500.0]),
           "unet.context": torch.randn(2, 77, 2048, generator=g), "unet.text_embeds": torch.randn(2, 1280, generator=g),
           "unet.time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024], [768.0, 1280, 16, 32, 1024, 1024]])}
    print("reference UNet call at 1024x1024 ...", flush=True)
    with torch.no_grad():
        ref["unet.output"] = unet(ref["unet.sample"], ref["unet.timesteps"], encoder_hidden_states=ref["unet.context"],
                                  added_cond_kwargs={"text_embeds": ref["unet.text_embeds"], "time_ids": ref["unet.time_ids"]}).sample
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(out, "reference.safetensors"))
    print("wrote reference.safetensors", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
