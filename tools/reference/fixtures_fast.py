"""Few-step sampling and TAESD fixtures on the tiny model: diffusers' LCMScheduler and TCDScheduler
(made from SD 1.5's scheduler config with from_config, as LCM-LoRA and TCD-LoRA users do) in
txt2img and img2img, and a random tiny AutoencoderTiny (TAESD) in both file layouts.
Run after fixtures_models.py (it loads Tests/Fixtures/tiny-sd).

Tests/Fixtures/fast.json
  "timesteps": {"lcm" | "tcd": {"<steps>@<strength>": [int, ...]}}   set_timesteps(steps, strength=strength)

Tests/Fixtures/fast.safetensors (float32)
  txt2img.latents                  (1, 4, 16, 16) given starting noise (torch.randn, seed 31)
  txt2img.<name>                   final latents of StableDiffusionPipeline (64x64, output_type="latent") for each
                                   entry of TXT2IMG: (sampler, steps, guidance, eta, noise): with noise "given" the
                                   pipeline gets txt2img.latents and a generator seeded SEED for the step noise; with
                                   "seed" it draws everything from torch.Generator().manual_seed(SEED)
  image                            (3, 64, 64) the img2img source in [0, 1]
  img2img.<name>                   final latents of img2img as LatentConsistencyModelImg2ImgPipeline does it (the
                                   scheduler's set_timesteps(steps, strength=s); the generator draws the VAE sample,
                                   the starting noise, then the step noise; guidance by classifier-free guidance,
                                   skipped at guidance <= 1, as StableDiffusionPipeline), for each entry of IMG2IMG
  taesd.image                      (1, 3, 64, 64) in [-1, 1]; taesd.latents = encode(taesd.image).latents;
  taesd.decoded                    decode(taesd.latents).sample; taesd.decoded_sd = decode of txt2img.lcm.4.1.0.given
  lcm_unet.cond_proj               (16, 8) the time_embedding.cond_proj weight that makes the tiny UNet an LCM-distilled
                                   one (time_cond_proj_dim 8; every other weight is the tiny UNet's)
  lcm_unet.guidance_embedding      (2, 8) get_guidance_scale_embedding([7.5, 0.5], 8)
  lcm_unet.<steps>.<guidance>      final latents of LatentConsistencyModelPipeline with that UNet (no negative prompt,
                                   guidance embedded as w = guidance - 1), from torch.Generator().manual_seed(SEED)
Metadata: prompt, negative, seeds.

Tests/Fixtures/taesd/                a diffusers AutoencoderTiny folder (config.json,
                                     diffusion_pytorch_model.safetensors) with TAESD_CONFIG: 8 channels, blocks
                                     (1, 2, 1, 1) / (1, 1, 2, 1), random weights (torch.manual_seed(404))
Tests/Fixtures/taesd-original/       the same weights as taesd_encoder.safetensors / taesd_decoder.safetensors with
                                     the original names (encoder "N.", decoder "N+1." after its leading clamp)

    ~/.venvs/sdflow-ref/bin/python fixtures_fast.py     (from tools/reference/)
"""
import json
import os

import numpy as np
import torch
from diffusers import (AutoencoderTiny, LatentConsistencyModelPipeline, LCMScheduler, StableDiffusionPipeline, TCDScheduler,
                       UNet2DConditionModel)
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from safetensors.torch import save_file

import tiny_models as tm
from common import fixture_path, save
from fixtures_pipelines import components
from make_sd15_model import tokenizer

PROMPT = "a red circle on a white background"
NEGATIVE = "blurry"
SEED = 1234
# (sampler, steps, guidance, eta (TCD's gamma), noise)
TXT2IMG = [("lcm", 4, 1.0, 0.0, "given"), ("lcm", 4, 1.0, 0.0, "seed"), ("lcm", 1, 1.0, 0.0, "seed"),
           ("lcm", 6, 1.5, 0.0, "seed"), ("tcd", 4, 1.0, 0.3, "given"), ("tcd", 4, 1.0, 0.3, "seed"),
           ("tcd", 4, 1.0, 0.0, "seed"), ("tcd", 8, 2.0, 1.0, "seed")]
# (sampler, steps, strength, guidance, eta)
IMG2IMG = [("lcm", 4, 0.5, 1.0, 0.0), ("lcm", 2, 0.3, 1.5, 0.0), ("tcd", 4, 0.6, 1.0, 0.3)]
TAESD_CONFIG = dict(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 2, 1, 1), num_decoder_blocks=(1, 1, 2, 1))


def scheduler(name):
    config = dict(tm.SD15_SCHEDULER)
    config.pop("_class_name")
    return (LCMScheduler if name == "lcm" else TCDScheduler).from_config(config)


def key(sampler, steps, guidance, eta, extra):
    return f"{sampler}.{steps}.{guidance}" + (f".{eta}" if sampler == "tcd" else "") + f".{extra}"


def img2img(pipe, sched, image, steps, strength, guidance, eta, seed):
    """LatentConsistencyModelImg2ImgPipeline's order of work, with classifier-free guidance instead of
    its guidance embedding (the tiny UNet has none)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, guidance > 1, negative_prompt=NEGATIVE)
        sched.set_timesteps(steps, strength=strength)
        timesteps = sched.timesteps
        pixels = image[None] * 2 - 1
        init = pipe.vae.encode(pixels).latent_dist.sample(g) * pipe.vae.config.scaling_factor
        noise = randn_tensor(init.shape, generator=g)
        latents = sched.add_noise(init, noise, timesteps[:1])
        for t in timesteps:
            if guidance > 1:
                eps_u, eps_c = pipe.unet(torch.cat([latents] * 2), t, encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            else:
                eps = pipe.unet(latents, t, encoder_hidden_states=cond).sample
            kwargs = {"eta": eta} if isinstance(sched, TCDScheduler) else {}
            latents = sched.step(eps, t, latents, generator=g, return_dict=False, **kwargs)[0]
    return latents


def original_taesd(model):
    """The original TAESD file layout: encoder.layers.N -> N, decoder.layers.N -> N + 1."""
    enc, dec = {}, {}
    for k, v in model.state_dict().items():
        part, _, index, rest = k.split(".", 3)
        if part == "encoder":
            enc[f"{index}.{rest}"] = v.contiguous()
        else:
            dec[f"{int(index) + 1}.{rest}"] = v.contiguous()
    return enc, dec


def make():
    torch.set_num_threads(1)
    unet, vae, clip = components()
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=clip, tokenizer=tokenizer(), unet=unet, scheduler=scheduler("lcm"),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    ref, timesteps = {}, {"lcm": {}, "tcd": {}}
    for name in timesteps:
        for strength in (1.0, 0.5, 0.3):
            for steps in range(1, 9):
                if steps > int(50 * strength):
                    continue
                s = scheduler(name)
                s.set_timesteps(steps, strength=strength)
                timesteps[name][f"{steps}@{strength}"] = s.timesteps.tolist()

    g = torch.Generator().manual_seed(31)
    ref["txt2img.latents"] = torch.randn(1, 4, 16, 16, generator=g)
    for sampler, steps, guidance, eta, noise in TXT2IMG:
        pipe.scheduler = scheduler(sampler)
        given = {"latents": ref["txt2img.latents"].clone()} if noise == "given" else {}
        with torch.no_grad():
            ref["txt2img." + key(sampler, steps, guidance, eta, noise)] = pipe(
                PROMPT, negative_prompt=NEGATIVE, height=64, width=64, num_inference_steps=steps, guidance_scale=guidance,
                eta=eta, generator=torch.Generator().manual_seed(SEED), output_type="latent", **given).images

    image = Image.fromarray((np.random.default_rng(9).random((64, 64, 3)) * 255).astype(np.uint8))
    ref["image"] = torch.tensor(np.asarray(image).astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    for sampler, steps, strength, guidance, eta in IMG2IMG:
        ref["img2img." + key(sampler, steps, guidance, eta, strength)] = img2img(
            pipe, scheduler(sampler), ref["image"], steps, strength, guidance, eta, SEED)

    torch.manual_seed(404)
    taesd = AutoencoderTiny(**TAESD_CONFIG).eval()
    folder = fixture_path("taesd", "x")[:-2]
    taesd.save_pretrained(folder, safe_serialization=True)
    enc, dec = original_taesd(taesd)
    save_file(enc, fixture_path("taesd-original", "taesd_encoder.safetensors"))
    save_file(dec, fixture_path("taesd-original", "taesd_decoder.safetensors"))
    with torch.no_grad():
        ref["taesd.image"] = ref["image"][None] * 2 - 1
        ref["taesd.latents"] = taesd.encode(ref["taesd.image"]).latents
        ref["taesd.decoded"] = taesd.decode(ref["taesd.latents"]).sample
        ref["taesd.decoded_sd"] = taesd.decode(ref["txt2img.lcm.4.1.0.given"] / taesd.config.scaling_factor).sample
    # An LCM-distilled UNet: the tiny UNet plus a guidance-embedding projection.
    lcm_unet = UNet2DConditionModel.from_config({**unet.config, "time_cond_proj_dim": 8}).eval()
    missing, unexpected = lcm_unet.load_state_dict(unet.state_dict(), strict=False)
    assert missing == ["time_embedding.cond_proj.weight"] and not unexpected, (missing, unexpected)
    torch.manual_seed(505)
    with torch.no_grad():
        lcm_unet.time_embedding.cond_proj.weight.copy_((torch.randn(16, 8) * 0.3).half().float())
    ref["lcm_unet.cond_proj"] = lcm_unet.time_embedding.cond_proj.weight.detach().clone()
    lcm_pipe = LatentConsistencyModelPipeline(vae=vae, text_encoder=clip, tokenizer=tokenizer(), unet=lcm_unet, scheduler=scheduler("lcm"),
                                              safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    ref["lcm_unet.guidance_embedding"] = lcm_pipe.get_guidance_scale_embedding(torch.tensor([7.5, 0.5]), embedding_dim=8)
    for steps, guidance in ((4, 8.5), (2, 1.0)):
        with torch.no_grad():
            ref[f"lcm_unet.{steps}.{guidance}"] = lcm_pipe(PROMPT, height=64, width=64, num_inference_steps=steps, guidance_scale=guidance,
                                                        generator=torch.Generator().manual_seed(SEED), output_type="latent").images
    save(ref, fixture_path("fast.safetensors"), metadata={"prompt": PROMPT, "negative": NEGATIVE, "seed": str(SEED)})
    with open(fixture_path("fast.json"), "w") as f:
        json.dump({"timesteps": timesteps}, f, indent=1)
    print("wrote fast.json")


if __name__ == "__main__":
    make()
