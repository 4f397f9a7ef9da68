"""Tiny random-weight SD 1.x models with the real architecture, and LDM <-> diffusers key maps.

The tiny models are small enough to commit (Tests/Fixtures/tiny-sd, a diffusers folder) yet
exercise every code path of the full-size ones: several levels, attention and plain levels,
ResBlocks that change width, GroupNorm with several channels per group, multi-head attention.
"""
import json
import os

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

TINY_UNET = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2, cross_attention_dim=16, attention_head_dim=2, norm_num_groups=8,
)
TINY_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 32), layers_per_block=2,
    latent_channels=4, norm_num_groups=8, sample_size=32,
)
TINY_CLIP = dict(
    vocab_size=49408, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=3,
    max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
)

# The real SD 1.5 shapes (diffusers' defaults for these classes are SD 1.x's).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2, cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
)
SD15_CLIP = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
    max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=1,
    projection_dim=768,
)


def randomize(model, generator, half=torch.float16):
    """Gives every parameter random values of a sensible scale, rounded to `half` precision
    (so that a model stored in F16/BF16 and its float32 reference agree exactly)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "embedding" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) / fan_in ** 0.5)
            elif "embedding" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
            elif name.endswith("weight"):  # norms
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            if half is not None:
                p.copy_(p.to(half).float())
    return model.eval()


def make_unet(config, generator=None, half=torch.float16):
    model = UNet2DConditionModel(**config)
    return randomize(model, generator, half) if generator is not None else model


def make_vae(config, generator=None, half=torch.float16):
    model = AutoencoderKL(**config)
    return randomize(model, generator, half) if generator is not None else model


def make_clip(config, generator=None, half=torch.bfloat16):
    model = CLIPTextModel(CLIPTextConfig(**config))
    return randomize(model, generator, half) if generator is not None else model


# MARK: - diffusers -> LDM names (verified by diffusers' own LDM -> diffusers converters)

def unet_ldm_names(config):
    """diffusers UNet module path -> LDM module path, for a UNet2DConditionModel config."""
    m = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
         "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}

    def resnet(d, l):
        for dn, ln in [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
                       ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]:
            m[f"{d}.{dn}"] = f"{l}.{ln}"

    levels = len(config["block_out_channels"])
    attention = [t.startswith("CrossAttn") for t in config["down_block_types"]]
    r = config["layers_per_block"]
    index = 1
    for level in range(levels):
        for j in range(r):
            resnet(f"down_blocks.{level}.resnets.{j}", f"input_blocks.{index}.0")
            if attention[level]:
                m[f"down_blocks.{level}.attentions.{j}"] = f"input_blocks.{index}.1"
            index += 1
        if level != levels - 1:
            m[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{index}.0.op"
            index += 1
    resnet("mid_block.resnets.0", "middle_block.0")
    m["mid_block.attentions.0"] = "middle_block.1"
    resnet("mid_block.resnets.1", "middle_block.2")
    index = 0
    for u, level in enumerate(reversed(range(levels))):
        for j in range(r + 1):
            resnet(f"up_blocks.{u}.resnets.{j}", f"output_blocks.{index}.0")
            if attention[level]:
                m[f"up_blocks.{u}.attentions.{j}"] = f"output_blocks.{index}.1"
            if level != 0 and j == r:
                m[f"up_blocks.{u}.upsamplers.0.conv"] = f"output_blocks.{index}.{2 if attention[level] else 1}.conv"
            index += 1
    return m


def vae_ldm_names(config):
    m = {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}

    def resnet(d, l):
        for dn, ln in [("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"),
                       ("conv_shortcut", "nin_shortcut")]:
            m[f"{d}.{dn}"] = f"{l}.{ln}"

    levels = len(config["block_out_channels"])
    r = config["layers_per_block"]
    for part in ("encoder", "decoder"):
        resnet(f"{part}.mid_block.resnets.0", f"{part}.mid.block_1")
        resnet(f"{part}.mid_block.resnets.1", f"{part}.mid.block_2")
        for dn, ln in [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]:
            m[f"{part}.mid_block.attentions.0.{dn}"] = f"{part}.mid.attn_1.{ln}"
        m[f"{part}.conv_in"] = f"{part}.conv_in"
        m[f"{part}.conv_out"] = f"{part}.conv_out"
        m[f"{part}.conv_norm_out"] = f"{part}.norm_out"
    for level in range(levels):
        for j in range(r):
            resnet(f"encoder.down_blocks.{level}.resnets.{j}", f"encoder.down.{level}.block.{j}")
        if level != levels - 1:
            m[f"encoder.down_blocks.{level}.downsamplers.0.conv"] = f"encoder.down.{level}.downsample.conv"
    for u, level in enumerate(reversed(range(levels))):
        for j in range(r + 1):
            resnet(f"decoder.up_blocks.{u}.resnets.{j}", f"decoder.up.{level}.block.{j}")
        if level != 0:
            m[f"decoder.up_blocks.{u}.upsamplers.0.conv"] = f"decoder.up.{level}.upsample.conv"
    return m


def clip_key(key):
    """The text encoder's name as SD 1.5's diffusers folder has it (transformers 5 drops `text_model.`)."""
    return key if key.startswith("text_model.") else "text_model." + key


def rename(key, modules):
    """Translates a parameter name by its longest mapped module prefix."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in modules:
            return modules[prefix] + "." + ".".join(parts[cut:])
    raise KeyError(f"no LDM name for {key}")


def to_ldm(unet, vae, clip, unet_config, vae_config):
    """A single-file LDM state dict (as v1-5-pruned-emaonly.safetensors lays it out) from
    diffusers models; VAE attention weights become 1x1 convolutions as in LDM files."""
    sd = {}
    if unet is not None:
        names = unet_ldm_names(unet_config)
        for k, v in unet.state_dict().items():
            sd["model.diffusion_model." + rename(k, names)] = v
    if vae is not None:
        names = vae_ldm_names(vae_config)
        for k, v in vae.state_dict().items():
            ldm = rename(k, names)
            if ".mid.attn_1." in ldm and ldm.endswith("weight") and v.dim() == 2:
                v = v[:, :, None, None]
            sd["first_stage_model." + ldm] = v
    if clip is not None:
        for k, v in clip.state_dict().items():
            sd["cond_stage_model.transformer." + clip_key(k)] = v
    return sd


def verify_ldm(sd, unet, vae, clip, unet_config, vae_config):
    """Converts the LDM dict back with diffusers' own single-file converters and checks that
    every tensor lands where it came from."""
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)
    checks = []
    if unet is not None:
        checks.append((convert_ldm_unet_checkpoint(sd, dict(unet.config)), unet.state_dict(), "unet"))
    if vae is not None:
        checks.append((convert_ldm_vae_checkpoint(sd, dict(vae.config)), vae.state_dict(), "vae"))
    if clip is not None:
        converted = convert_ldm_clip_checkpoint(sd)
        checks.append((converted, {clip_key(k): v for k, v in clip.state_dict().items()}, "clip"))
    for converted, original, name in checks:
        assert set(converted) == set(original), f"{name}: key sets differ: {set(converted) ^ set(original)}"
        for k, v in original.items():
            assert converted[k].shape == v.shape and (v.device.type == "meta" or torch.equal(converted[k], v)), f"{name}: {k}"
    return True


def key_map(unet, vae, clip, unet_config, vae_config):
    """LDM name -> diffusers name for every parameter (prefixes of the single file removed)."""
    result = {"unet": {}, "vae": {}, "text_encoder": {}}
    names = unet_ldm_names(unet_config)
    for k in unet.state_dict():
        result["unet"][rename(k, names)] = k
    names = vae_ldm_names(vae_config)
    for k in vae.state_dict():
        result["vae"][rename(k, names)] = k
    for k in clip.state_dict():
        result["text_encoder"][clip_key(k)] = clip_key(k)
    return result


def save_diffusers_folder(path, unet, vae, clip, unet_name, vae_name, clip_name, unet_dtype, vae_dtype, clip_dtype):
    """Writes a diffusers pipeline folder (configs, weights, scheduler, model_index)."""
    from safetensors.torch import save_file
    for sub, model, name, dtype in (("unet", unet, unet_name, unet_dtype), ("vae", vae, vae_name, vae_dtype),
                                    ("text_encoder", clip, clip_name, clip_dtype)):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
        model.config.save_pretrained(os.path.join(path, sub)) if sub == "text_encoder" else \
            model.save_config(os.path.join(path, sub))
        state = {(clip_key(k) if sub == "text_encoder" else k): v.to(dtype).contiguous()
                 for k, v in model.state_dict().items()}
        save_file(state, os.path.join(path, sub, name), metadata={"format": "pt"})
    os.makedirs(os.path.join(path, "scheduler"), exist_ok=True)
    with open(os.path.join(path, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(SD15_SCHEDULER, f, indent=2)
    with open(os.path.join(path, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
                   "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                   "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                   "scheduler": ["diffusers", "PNDMScheduler"], "safety_checker": [None, None],
                   "feature_extractor": [None, None], "requires_safety_checker": False}, f, indent=2)


# SD 1.5's scheduler_config.json.
SD15_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "trained_betas": None,
}
