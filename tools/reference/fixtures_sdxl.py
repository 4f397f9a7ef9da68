"""Tiny SDXL fixtures: a diffusers SDXL folder with the real architecture's features at toy widths
(Tests/Fixtures/tiny-sdxl) and diffusers' outputs on it (Tests/Fixtures/sdxl-reference.safetensors).

The tiny SDXL has what makes SDXL SDXL: a first level without attention, transformer depth per level
(1 and 2 blocks; the middle takes the last level's), linear projections, two text encoders (a
CLIP-L-like one with quick-GELU and a bigG-like one with GELU and a text projection), their
penultimate hidden states concatenated, the pooled projected output of the second and the six
size/crop numbers (`time_ids`) embedded into the timestep embedding (`text_time`), and a VAE with
SDXL's scaling factor 0.13025 and 8 pixels per latent cell. Weights are random, rounded to float16 precision.

sdxl-reference.safetensors:
  text.ids1, text.ids2        the prompt's tokens for each encoder (the second pads with "!", id 0)
  text.embeds, text.pooled    encode_prompt's prompt_embeds (1, 77, 32) and pooled_prompt_embeds (1, 16)
  text.negative_embeds, text.negative_pooled
  unet.sample, unet.timesteps, unet.context, unet.text_embeds, unet.time_ids, unet.output
  txt2img.latents, txt2img    StableDiffusionXLPipeline, euler, 5 steps, guidance 5, 64x64 (latents out)
  img2img                     StableDiffusionXLImg2ImgPipeline, euler_a, 6 steps, strength 0.6 (seed in metadata)
  txt2img.seeded              the txt2img with the noise of seed 42 (as workflows draw it)
  turbo                       SDXL-Turbo's settings: euler_a with trailing timesteps, 2 steps, guidance 0, seed 43
  image                       the img2img input image (3, 64, 64) in [0, 1]
"""
import json
import os

import numpy as np
import torch
from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

import tiny_models as tm
from common import fixture_path, save
from make_sd15_model import tokenizer

TINY_SDXL_UNET = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=2, cross_attention_dim=32, attention_head_dim=(1, 2, 4), transformer_layers_per_block=(1, 1, 2),
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=6 * 8 + 16, norm_num_groups=8,
)
# Four levels: 8 pixels per latent cell as SDXL's (whose time ids are the latent's size x 8).
TINY_SDXL_VAE = dict(tm.TINY_VAE, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                     block_out_channels=(8, 16, 16, 16), scaling_factor=0.13025)
TINY_CLIP_L = dict(tm.TINY_CLIP)
TINY_CLIP_G = dict(tm.TINY_CLIP, hidden_act="gelu", projection_dim=16, num_hidden_layers=3, hidden_size=16,
                   intermediate_size=48, num_attention_heads=4, pad_token_id=0)
SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
    "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False,
}
PROMPT = "a red circle on a white background"
NEGATIVE = "blurry"


def tokenizer_2():
    tok = tokenizer()
    tok.pad_token = "!"
    return tok


def make_models():
    g = torch.Generator().manual_seed(2024)
    unet = tm.randomize(UNet2DConditionModel(**TINY_SDXL_UNET), g)
    vae = tm.make_vae(TINY_SDXL_VAE, g)
    clip_l = tm.randomize(CLIPTextModel(CLIPTextConfig(**TINY_CLIP_L)), g)
    clip_g = tm.randomize(CLIPTextModelWithProjection(CLIPTextConfig(**TINY_CLIP_G)), g)
    return unet, vae, clip_l, clip_g


def save_folder(folder, unet, vae, clip_l, clip_g):
    from safetensors.torch import save_file
    for sub, model in (("unet", unet), ("vae", vae), ("text_encoder", clip_l), ("text_encoder_2", clip_g)):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        if sub.startswith("text_encoder"):
            model.config.save_pretrained(os.path.join(folder, sub))
            name = "model.fp16.safetensors"
            state = {(tm.clip_key(k) if not k.startswith("text_projection") else k): v.half().contiguous()
                     for k, v in model.state_dict().items()}
        else:
            model.save_config(os.path.join(folder, sub))
            name = "diffusion_pytorch_model.fp16.safetensors"
            state = {k: v.half().contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(folder, sub, name), metadata={"format": "pt"})
    os.makedirs(os.path.join(folder, "scheduler"), exist_ok=True)
    with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(SDXL_SCHEDULER, f, indent=2)
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1",
                   "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                   "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                   "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
                   "scheduler": ["diffusers", "EulerDiscreteScheduler"], "force_zeros_for_empty_prompt": True}, f, indent=2)
    print("wrote Tests/Fixtures/tiny-sdxl")


def make():
    torch.set_num_threads(1)
    unet, vae, clip_l, clip_g = make_models()
    save_folder(fixture_path("tiny-sdxl", "x")[:-2], unet, vae, clip_l, clip_g)
    tok, tok2 = tokenizer(), tokenizer_2()
    config = {k: v for k, v in SDXL_SCHEDULER.items() if k != "_class_name"}
    parts = dict(vae=vae, text_encoder=clip_l, text_encoder_2=clip_g, tokenizer=tok, tokenizer_2=tok2, unet=unet)
    pipe = StableDiffusionXLPipeline(scheduler=EulerDiscreteScheduler.from_config(config), **parts)
    pipe.set_progress_bar_config(disable=True)
    ref, meta = {}, {"prompt": PROMPT, "negative": NEGATIVE}
    with torch.no_grad():
        ref["text.ids1"] = tok(PROMPT, padding="max_length", max_length=77, return_tensors="pt").input_ids.float()
        ref["text.ids2"] = tok2(PROMPT, padding="max_length", max_length=77, return_tensors="pt").input_ids.float()
        embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(PROMPT, negative_prompt=NEGATIVE,
                                                                              do_classifier_free_guidance=True)
        ref.update({"text.embeds": embeds, "text.pooled": pooled, "text.negative_embeds": negative_embeds,
                    "text.negative_pooled": negative_pooled})
        g = torch.Generator().manual_seed(7)
        sample = torch.randn(2, 4, 16, 16, generator=g)
        context = torch.cat([negative_embeds, embeds])
        text_embeds = torch.cat([negative_pooled, pooled])
        time_ids = torch.tensor([[64.0, 64, 0, 0, 64, 64], [48.0, 80, 8, 4, 64, 64]])
        timesteps = torch.tensor([981.0, 21.0])
        ref.update({"unet.sample": sample, "unet.timesteps": timesteps, "unet.context": context,
                    "unet.text_embeds": text_embeds, "unet.time_ids": time_ids})
        ref["unet.output"] = unet(sample, timesteps, encoder_hidden_states=context,
                                  added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
    latents = torch.randn(1, 4, 8, 8, generator=g)
    ref["txt2img.latents"] = latents
    ref["txt2img"] = pipe(PROMPT, negative_prompt=NEGATIVE, height=64, width=64, num_inference_steps=5, guidance_scale=5.0,
                          latents=latents.clone(), output_type="latent").images
    # Seeded as workflows are (the starting noise from the seed): workflows/sdxl-txt2img.yaml and sdxl-turbo.yaml.
    ref["txt2img.seeded"] = pipe(PROMPT, negative_prompt=NEGATIVE, height=64, width=64, num_inference_steps=5, guidance_scale=5.0,
                                 generator=torch.Generator().manual_seed(42), output_type="latent").images
    turbo = StableDiffusionXLPipeline(scheduler=EulerAncestralDiscreteScheduler.from_config(config, timestep_spacing="trailing"), **parts)
    turbo.set_progress_bar_config(disable=True)
    ref["turbo"] = turbo(PROMPT, height=64, width=64, num_inference_steps=2, guidance_scale=0.0,
                         generator=torch.Generator().manual_seed(43), output_type="latent").images
    image = Image.fromarray((np.random.default_rng(5).random((64, 64, 3)) * 255).astype(np.uint8))
    ref["image"] = torch.tensor(np.asarray(image).astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    img2img = StableDiffusionXLImg2ImgPipeline(scheduler=EulerAncestralDiscreteScheduler.from_config(config), **parts)
    img2img.set_progress_bar_config(disable=True)
    ref["img2img"] = img2img(PROMPT, negative_prompt=NEGATIVE, image=image, strength=0.6, num_inference_steps=6, guidance_scale=5.0,
                             generator=torch.Generator().manual_seed(61), output_type="latent").images
    meta["img2img"] = "61"
    save(ref, fixture_path("sdxl-reference.safetensors"), metadata=meta)


if __name__ == "__main__":
    make()
