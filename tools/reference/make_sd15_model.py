"""Writes a random-weight model of the exact SD 1.5 architecture (859,520,964 UNet parameters)
in both checkpoint layouts and both precisions, plus reference outputs, for sdflow's opt-in
full-size tests and benchmarks. Large (about 9 GB in all); never committed.

    python make_sd15_model.py OUT_DIR

OUT_DIR/diffusers-f32/          diffusers folder, float32
OUT_DIR/diffusers-f16/          diffusers folder, *.fp16.safetensors (float16)
OUT_DIR/sd15-f32.safetensors    single-file LDM layout, float32
OUT_DIR/sd15-f16.safetensors    single-file LDM layout, float16
OUT_DIR/reference.safetensors   inputs and diffusers/transformers outputs (float32)

Weights are rounded to float16 precision first, so all four variants hold the same values and
one set of reference outputs serves them all. Then `SDFLOW_SD15=OUT_DIR swift test -c release`
runs the full-size checks.
"""
import os
import sys

import torch
from safetensors.torch import save_file

import clip_vocab
import tiny_models as tm

PROMPTS = ["a photo of an astronaut riding a horse on mars",
           "a red fox in the snow, highly detailed, 4k photograph by a famous photographer"]


def tokenizer():
    """transformers' CLIPTokenizer over sdflow's bundled vocabulary (the same as openai/clip-vit-large-patch14)."""
    from transformers import CLIPTokenizer
    merge_list = clip_vocab.merges()
    tok = CLIPTokenizer(vocab=clip_vocab.vocabulary(merge_list), merges=merge_list)
    tok.model_max_length = 77
    return tok


def main(out):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(15)
    print("building random SD 1.5 models ...", flush=True)
    unet = tm.make_unet(tm.SD15_UNET, g)
    vae = tm.make_vae(tm.SD15_VAE, g)
    clip = tm.make_clip(tm.SD15_CLIP, g, half=torch.float16)
    print("UNet parameters:", sum(p.numel() for p in unet.parameters()), flush=True)

    tok = tokenizer()
    for name, dtype, suffix in (("diffusers-f32", torch.float32, ""), ("diffusers-f16", torch.float16, ".fp16")):
        folder = os.path.join(out, name)
        tm.save_diffusers_folder(folder, unet, vae, clip, f"diffusion_pytorch_model{suffix}.safetensors",
                                 f"diffusion_pytorch_model{suffix}.safetensors", f"model{suffix}.safetensors",
                                 dtype, dtype, dtype)
        tok.save_pretrained(os.path.join(folder, "tokenizer"))
        print("wrote", folder, flush=True)
    ldm = tm.to_ldm(unet, vae, clip, tm.SD15_UNET, tm.SD15_VAE)
    tm.verify_ldm(ldm, unet, vae, clip, tm.SD15_UNET, tm.SD15_VAE)
    for name, dtype in (("sd15-f32.safetensors", torch.float32), ("sd15-f16.safetensors", torch.float16)):
        save_file({k: v.to(dtype).contiguous() for k, v in ldm.items()}, os.path.join(out, name))
        print("wrote", name, flush=True)

    ref = {}
    with torch.no_grad():
        ids = tok(PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        out_clip = clip(ids, output_hidden_states=True)
        ref["clip.ids"] = ids.float()
        ref["clip.last"] = out_clip.last_hidden_state
        ref["clip.skip1"] = clip.final_layer_norm(out_clip.hidden_states[-2])
        sample = torch.randn(2, 4, 32, 32, generator=g)
        timesteps = torch.tensor([981.0, 1.0])
        ref["unet.sample"], ref["unet.timesteps"], ref["unet.context"] = sample, timesteps, out_clip.last_hidden_state
        ref["unet.output"] = unet(sample, timesteps, encoder_hidden_states=out_clip.last_hidden_state).sample
        image = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
        ref["vae.image"] = image
        ref["vae.latents"] = vae.encode(image).latent_dist.mean * vae.config.scaling_factor
        ref["vae.decoded"] = vae.decode(ref["vae.latents"] / vae.config.scaling_factor).sample
    save_file({k: v.clone().contiguous() for k, v in ref.items()}, os.path.join(out, "reference.safetensors"))
    print("wrote reference.safetensors", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
