"""Pipeline fixtures on the tiny model: diffusers' txt2img, img2img and inpainting (4- and
9-channel) pipelines with every sampler, their inputs, their random draws and the final
latents (output_type="latent"), plus scheduler timesteps and sigmas for every sampler,
spacing and a few step counts. Writes Tests/Fixtures/pipelines.safetensors and
Tests/Fixtures/schedules.json. Run after fixtures_models.py (it loads Tests/Fixtures/tiny-sd).
"""
import json

import numpy as np
import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline,
                       StableDiffusionPipeline)
from PIL import Image

import tiny_models as tm
from common import fixture_path, save
from make_sd15_model import tokenizer

SCHEDULERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_karras": (EulerDiscreteScheduler, {"use_karras_sigmas": True}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
}

PROMPT = "a red circle on a white background"
NEGATIVE = "blurry"


def scheduler(name, spacing=None):
    cls, extra = SCHEDULERS[name]
    config = dict(tm.SD15_SCHEDULER)
    config.pop("_class_name")
    if spacing:
        extra = {**extra, "timestep_spacing": spacing}
    return cls.from_config(config, **extra)


def components():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel
    folder = fixture_path("tiny-sd", "x")[:-2]
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet").float().eval()
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", variant="fp16").float().eval()
    clip = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").float().eval()
    return unet, vae, clip


def schedules():
    """Timesteps, sigmas and the starting noise scale of every sampler for a few settings."""
    table = {}
    for name in SCHEDULERS:
        for spacing in ("leading", "trailing", "linspace"):
            for steps in (1, 4, 10, 20, 61):
                s = scheduler(name, spacing)
                s.set_timesteps(steps)
                entry = {"timesteps": [float(t) for t in s.timesteps],
                         "init_noise_sigma": float(s.init_noise_sigma)}
                if hasattr(s, "sigmas"):
                    entry["sigmas"] = [float(x) for x in s.sigmas]
                table[f"{name}/{spacing}/{steps}"] = entry
    return table


def make():
    torch.set_num_threads(1)
    unet, vae, clip = components()
    tok = tokenizer()
    ref = {}
    meta = {"prompt": PROMPT, "negative": NEGATIVE}
    g = torch.Generator().manual_seed(77)
    h = w = 64  # latents 16x16 (the tiny VAE downsamples by 4)

    # txt2img: every sampler, given starting latents; step noise from seed 1000 + i.
    latents = torch.randn(1, 4, h // 4, w // 4, generator=g)
    ref["txt2img.latents"] = latents
    cases = [("ddpm", None, 0.0), ("ddim", None, 0.0), ("ddim", "linspace", 0.5), ("euler", None, 0.0),
             ("euler", "trailing", 0.0), ("euler_karras", None, 0.0), ("euler_karras", "leading", 0.0),
             ("euler_a", None, 0.0), ("dpmpp_2m", None, 0.0), ("dpmpp_2m", "leading", 0.0), ("dpmpp_2m_karras", None, 0.0)]
    for i, (name, spacing, eta) in enumerate(cases):
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=clip, tokenizer=tok, unet=unet,
                                       scheduler=scheduler(name, spacing), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        key = f"txt2img.{name}.{spacing or 'default'}.{eta}"
        seed = 1000 + i
        out = pipe(PROMPT, negative_prompt=NEGATIVE, height=h, width=w, num_inference_steps=6, guidance_scale=7.5,
                   latents=latents.clone(), eta=eta, generator=torch.Generator().manual_seed(seed),
                   output_type="latent").images
        ref[key] = out
        meta[key] = str(seed)

    # img2img: the generator draws the VAE sample noise, then the starting noise, then step noise.
    image = Image.fromarray((np.random.default_rng(5).random((h, w, 3)) * 255).astype(np.uint8))
    ref["image"] = torch.tensor(np.asarray(image).astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    for name, strength, seed in (("euler_a", 0.6, 11), ("ddim", 0.5, 12), ("dpmpp_2m", 0.75, 13)):
        pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=clip, tokenizer=tok, unet=unet,
                                              scheduler=scheduler(name), safety_checker=None,
                                              feature_extractor=None, requires_safety_checker=False)
        key = f"img2img.{name}.{strength}"
        ref[key] = pipe(PROMPT, image=image, strength=strength, num_inference_steps=8, guidance_scale=7.5,
                        negative_prompt=NEGATIVE, generator=torch.Generator().manual_seed(seed), output_type="latent").images
        meta[key] = str(seed)

    # Inpainting: a mask with a soft edge (binarised by the pipeline at 0.5).
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.clip(1.5 - np.hypot(xx - 30, yy - 26) / 12, 0, 1)
    mask_image = Image.fromarray((mask * 255).astype(np.uint8), "L")
    ref["mask"] = torch.tensor(np.asarray(mask_image).astype(np.float32) / 255)[None].contiguous()
    for name, strength, seed in (("euler", 1.0, 21), ("ddim", 0.75, 22), ("dpmpp_2m_karras", 1.0, 23)):
        pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=clip, tokenizer=tok, unet=unet,
                                              scheduler=scheduler(name), safety_checker=None,
                                              feature_extractor=None, requires_safety_checker=False)
        key = f"inpaint4.{name}.{strength}"
        ref[key] = pipe(PROMPT, image=image, mask_image=mask_image, height=h, width=w, strength=strength,
                        num_inference_steps=6, guidance_scale=7.5, negative_prompt=NEGATIVE,
                        generator=torch.Generator().manual_seed(seed), output_type="latent").images
        meta[key] = str(seed)

    # 9-channel UNet: the tiny weights with the reference's 9-channel conv_in.
    reference = __import__("safetensors.torch", fromlist=["load_file"]).load_file(fixture_path("tiny-sd-reference.safetensors"))
    unet9 = tm.make_unet({**tm.TINY_UNET, "in_channels": 9})
    state = unet.state_dict()
    state["conv_in.weight"] = reference["unet9.conv_in_weight"]
    unet9.load_state_dict(state)
    unet9.eval()
    for name, strength, seed in (("dpmpp_2m", 1.0, 31), ("euler_a", 0.8, 32)):
        pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=clip, tokenizer=tok, unet=unet9,
                                              scheduler=scheduler(name), safety_checker=None,
                                              feature_extractor=None, requires_safety_checker=False)
        key = f"inpaint9.{name}.{strength}"
        ref[key] = pipe(PROMPT, image=image, mask_image=mask_image, height=h, width=w, strength=strength,
                        num_inference_steps=6, guidance_scale=7.5, negative_prompt=NEGATIVE,
                        generator=torch.Generator().manual_seed(seed), output_type="latent").images
        meta[key] = str(seed)
    save(ref, fixture_path("pipelines.safetensors"), metadata=meta)
    with open(fixture_path("schedules.json"), "w") as f:
        json.dump(schedules(), f, indent=0, sort_keys=True)
    print("wrote schedules.json")


if __name__ == "__main__":
    make()
