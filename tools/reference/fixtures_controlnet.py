"""ControlNet fixtures on the tiny model: two tiny random ControlNets built by diffusers from the
tiny UNet's config (their condition embedding downsamples by 4, as the tiny VAE does), written in
the layouts sdflow reads, and reference outputs. Run after fixtures_models.py (it loads
Tests/Fixtures/tiny-sd).

Tests/Fixtures/controlnet/
  tiny-a/                     diffusers folder (config.json + diffusion_pytorch_model.safetensors, float32)
  tiny-a-ldm.safetensors      the same weights, LDM names under control_model. (as A1111's
                              control_v11p_sd15_*.safetensors), float16
  tiny-a-bare-bf16.safetensors  LDM names without the prefix, bfloat16
  tiny-a-v10.pth              ControlNet 1.0's pickled layout (state_dict with control_model. and other parts), float16
  tiny-b/                     another net (diffusers folder), for two nets at once
  sd21-like.safetensors       a net whose cross-attention reads 1024-wide text (SD 2.x): refused
  t2i-adapter.safetensors     T2I-Adapter keys: refused
  sdxl-like.safetensors       SDXL ControlNet keys (label_emb): refused
  control-lora-like.safetensors  Control-LoRA keys (lora_controlnet): refused
Weights are random, rounded to bfloat16 precision so every layout stores the same values.

Tests/Fixtures/controlnet-reference.safetensors:
  residuals.*        ControlNetModel(sample, t, context, hint, conditioning_scale=0.8) down 0..N and mid,
                     and the same in guess mode (guess.*)
  img2img.*          StableDiffusionControlNetImg2ImgPipeline, net a, euler, 8 steps, strength 0.75,
                     control_guidance 0.1..0.8, scale 0.9 (latents out)
  multi.*            StableDiffusionControlNetPipeline, nets a and b, scales 0.7 and 0.5, euler_a, 6 steps
  guess.txt2img      net a in guess mode, euler, 6 steps
  inpaint.*          StableDiffusionControlNetInpaintPipeline, net a with the inpaint condition (masked pixels -1)
"""
import json
import os

import numpy as np
import torch
from diffusers import (ControlNetModel, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
                       StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetInpaintPipeline,
                       StableDiffusionControlNetPipeline)
from PIL import Image
from safetensors.torch import save_file

import tiny_models as tm
from common import fixture_path, save
from fixtures_pipelines import NEGATIVE, PROMPT, components
from make_sd15_model import tokenizer

TINY_CONTROLNET = dict(
    in_channels=4, block_out_channels=(16, 32, 32),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    layers_per_block=2, cross_attention_dim=16, attention_head_dim=2, norm_num_groups=8,
    conditioning_embedding_out_channels=(8, 16, 16),
)


def controlnet_ldm_names(config):
    """diffusers ControlNetModel module path -> LDM module path (A1111 / lllyasviel files)."""
    unet = tm.unet_ldm_names({**config, "up_block_types": ()})
    m = {k: v for k, v in unet.items() if not k.startswith("up_blocks") and k not in ("conv_norm_out", "conv_out")}
    channels = config["conditioning_embedding_out_channels"]
    m["controlnet_cond_embedding.conv_in"] = "input_hint_block.0"
    for k in range(2 * (len(channels) - 1)):
        m[f"controlnet_cond_embedding.blocks.{k}"] = f"input_hint_block.{2 * (k + 1)}"
    m["controlnet_cond_embedding.conv_out"] = f"input_hint_block.{2 * (2 * (len(channels) - 1) + 1)}"
    levels = len(config["block_out_channels"])
    count = 1 + levels * config["layers_per_block"] + (levels - 1)
    for n in range(count):
        m[f"controlnet_down_blocks.{n}"] = f"zero_convs.{n}.0"
    m["controlnet_mid_block"] = "middle_block_out.0"
    return m


def make_controlnet(seed):
    model = tm.randomize(ControlNetModel(**TINY_CONTROLNET), torch.Generator().manual_seed(seed), half=torch.bfloat16)
    with torch.no_grad():  # and exact in float16 too (the smallest values lose bits there)
        for p in model.parameters():
            p.copy_(p.to(torch.float16).float())
    return model


def ldm_state(model, prefix=""):
    names = controlnet_ldm_names(TINY_CONTROLNET)
    return {prefix + tm.rename(k, names): v.contiguous() for k, v in model.state_dict().items()}


def verify(model, state):
    """diffusers' own single-file converter puts every LDM tensor back where it came from. It
    knows only SD 1.5's six condition-embedding blocks (conv_out at input_hint_block.14), so the
    tiny net's four are left out of the check; their names follow the same rule."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint
    converted = convert_controlnet_checkpoint(state, dict(model.config))
    original = model.state_dict()
    checked = {k for k in original if not k.startswith("controlnet_cond_embedding.blocks.")
               and not k.startswith("controlnet_cond_embedding.conv_out.")}
    for k in checked:
        assert torch.equal(original[k], converted[k]), k


def write_files(a, b):
    folder = fixture_path("controlnet", "x")[:-2]
    a.save_pretrained(os.path.join(folder, "tiny-a"), safe_serialization=True)
    b.save_pretrained(os.path.join(folder, "tiny-b"), safe_serialization=True)
    state = ldm_state(a, "control_model.")
    verify(a, ldm_state(a))
    for key, value in state.items():
        assert torch.equal(value.to(torch.float16).float(), value), f"{key} is not exact in float16"
    save_file({k: v.to(torch.float16) for k, v in state.items()}, os.path.join(folder, "tiny-a-ldm.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in ldm_state(a).items()}, os.path.join(folder, "tiny-a-bare-bf16.safetensors"))
    # ControlNet 1.0's pickled layout: the whole model, the ControlNet under control_model.
    whole = {**state, "model.diffusion_model.out.2.bias": torch.zeros(4), "first_stage_model.decoder.conv_out.bias": torch.zeros(3)}
    torch.save({"state_dict": {k: v.to(torch.float16) for k, v in whole.items()}}, os.path.join(folder, "tiny-a-v10.pth"))
    # SD 2.x-like: the cross-attention keys read 1024-wide text.
    sd21 = {}
    for k, v in ldm_state(a, "control_model.").items():
        if ("attn2.to_k" in k or "attn2.to_v" in k) and ".input_blocks.1." in k:
            sd21[k] = torch.zeros(v.shape[0], 1024, dtype=torch.float16)
        elif "zero_convs" in k or "input_hint_block" in k or "time_embed" in k:
            sd21[k] = v.to(torch.float16)
    save_file(sd21, os.path.join(folder, "sd21-like.safetensors"))
    save_file({"body.0.block1.weight": torch.zeros(8, 8, 3, 3), "conv_in.weight": torch.zeros(8, 192, 3, 3)},
              os.path.join(folder, "t2i-adapter.safetensors"))
    save_file({"control_model.label_emb.0.0.weight": torch.zeros(8, 16), "control_model.zero_convs.0.0.weight": torch.zeros(8, 8, 1, 1)},
              os.path.join(folder, "sdxl-like.safetensors"))
    save_file({"lora_controlnet": torch.zeros(1), "input_hint_block.0.weight": torch.zeros(16, 3, 3, 3),
               "input_blocks.1.0.in_layers.2.up": torch.zeros(8, 4)}, os.path.join(folder, "control-lora-like.safetensors"))
    print("wrote Tests/Fixtures/controlnet/")


def make():
    torch.set_num_threads(1)
    a, b = make_controlnet(4242), make_controlnet(4343)
    write_files(a, b)
    unet, vae, clip = components()
    tok = tokenizer()
    ref = {}
    meta = {"prompt": PROMPT, "negative": NEGATIVE}
    g = torch.Generator().manual_seed(99)
    h = w = 64  # latents 16x16

    # The residuals of one call, plain and in guess mode.
    sample = torch.randn(2, 4, 16, 16, generator=g)
    context = torch.randn(2, 77, 16, generator=g)
    hint = torch.rand(2, 3, 64, 64, generator=g)
    t = torch.tensor([501.0, 501.0])
    ref.update({"residuals.sample": sample, "residuals.context": context, "residuals.hint": hint})
    with torch.no_grad():
        for name, guess in (("residuals", False), ("guess", True)):
            down, mid = a(sample, t, encoder_hidden_states=context, controlnet_cond=hint, conditioning_scale=0.8,
                          guess_mode=guess, return_dict=False)
            for i, d in enumerate(down):
                ref[f"{name}.down.{i}"] = d
            ref[f"{name}.mid"] = mid

    def scheduler(cls):
        config = dict(tm.SD15_SCHEDULER)
        config.pop("_class_name")
        return cls.from_config(config)

    parts = dict(vae=vae, text_encoder=clip, tokenizer=tok, unet=unet, safety_checker=None, feature_extractor=None,
                 requires_safety_checker=False)
    rng = np.random.default_rng(5)
    image = Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))
    control = Image.fromarray((np.random.default_rng(6).random((h, w, 3)) > 0.7).astype(np.uint8) * 255)
    control_b = Image.fromarray((np.random.default_rng(7).random((h, w, 3)) * 255).astype(np.uint8))
    to_tensor = lambda im: torch.tensor(np.asarray(im).astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    ref["image"], ref["control"], ref["control_b"] = to_tensor(image), to_tensor(control), to_tensor(control_b)

    # img2img with one net, guidance from 10% to 80% of the steps.
    pipe = StableDiffusionControlNetImg2ImgPipeline(controlnet=a, scheduler=scheduler(EulerDiscreteScheduler), **parts)
    ref["img2img"] = pipe(PROMPT, image=image, control_image=control, strength=0.75, num_inference_steps=8, guidance_scale=7.5,
                          negative_prompt=NEGATIVE, controlnet_conditioning_scale=0.9, control_guidance_start=0.1,
                          control_guidance_end=0.8, generator=torch.Generator().manual_seed(51), output_type="latent").images
    meta["img2img"] = "51"

    # txt2img with two nets.
    latents = torch.randn(1, 4, 16, 16, generator=g)
    ref["txt2img.latents"] = latents
    pipe = StableDiffusionControlNetPipeline(controlnet=[a, b], scheduler=scheduler(EulerAncestralDiscreteScheduler), **parts)
    ref["multi"] = pipe(PROMPT, image=[control, control_b], num_inference_steps=6, guidance_scale=7.5, negative_prompt=NEGATIVE,
                        controlnet_conditioning_scale=[0.7, 0.5], latents=latents.clone(),
                        generator=torch.Generator().manual_seed(52), output_type="latent").images
    meta["multi"] = "52"

    # Guess mode: the net sees only the prompt's half; its residuals are scaled 0.1 .. 1.
    pipe = StableDiffusionControlNetPipeline(controlnet=a, scheduler=scheduler(EulerDiscreteScheduler), **parts)
    ref["guess.txt2img"] = pipe(PROMPT, image=control, num_inference_steps=6, guidance_scale=7.5, negative_prompt=NEGATIVE,
                                guess_mode=True, controlnet_conditioning_scale=1.0, latents=latents.clone(),
                                output_type="latent").images

    # Inpainting with the inpaint condition: the image with masked pixels at -1 (diffusers' make_inpaint_condition).
    yy, xx = np.mgrid[0:h, 0:w]
    mask = (np.hypot(xx - 30, yy - 26) < 14).astype(np.float32)
    mask_image = Image.fromarray((mask * 255).astype(np.uint8), "L")
    ref["mask"] = torch.tensor(mask)[None].contiguous()
    condition = np.asarray(image).astype(np.float32) / 255
    condition[mask > 0.5] = -1
    condition = torch.tensor(condition).permute(2, 0, 1)[None].contiguous()
    pipe = StableDiffusionControlNetInpaintPipeline(controlnet=a, scheduler=scheduler(EulerDiscreteScheduler), **parts)
    ref["inpaint"] = pipe(PROMPT, image=image, mask_image=mask_image, control_image=condition, height=h, width=w, strength=1.0,
                          controlnet_conditioning_scale=1.0,
                          num_inference_steps=6, guidance_scale=7.5, negative_prompt=NEGATIVE,
                          generator=torch.Generator().manual_seed(53), output_type="latent").images
    meta["inpaint"] = "53"
    save(ref, fixture_path("controlnet-reference.safetensors"), metadata=meta)


if __name__ == "__main__":
    make()
