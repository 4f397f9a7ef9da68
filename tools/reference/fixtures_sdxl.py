"""Tiny SDXL fixtures: a diffusers SDXL folder with the real architecture's features at toy widths
(Tests/Fixtures/tiny-sdxl, and the single file of SDXL's layout, tiny-sdxl.safetensors) and diffusers' outputs on it (Tests/Fixtures/sdxl-reference.safetensors).

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
from safetensors.torch import save_file
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


def openclip_state(clip_g):
    """The second encoder in the names SDXL single files use (OpenCLIP's: fused q/k/v, the text
    projection stored transposed), under conditioner.embedders.1.model."""
    prefix, out = "conditioner.embedders.1.model.", {}
    for k, v in clip_g.state_dict().items():
        k = tm.clip_key(k) if not k.startswith("text_projection") else k
        if k == "text_projection.weight":
            out[prefix + "text_projection"] = v.T.contiguous()
        elif k == "text_model.embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = v
        elif k == "text_model.embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = v
        elif k.startswith("text_model.final_layer_norm."):
            out[prefix + "ln_final." + k.split(".")[-1]] = v
        elif k.startswith("text_model.encoder.layers."):
            rest = k[len("text_model.encoder.layers."):]
            layer, name = rest.split(".", 1)
            base = f"{prefix}transformer.resblocks.{layer}."
            if name.startswith("self_attn.q_proj") or name.startswith("self_attn.k_proj") or name.startswith("self_attn.v_proj"):
                continue  # fused below
            name = (name.replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2").replace("mlp.fc1", "mlp.c_fc")
                    .replace("mlp.fc2", "mlp.c_proj").replace("self_attn.out_proj", "attn.out_proj"))
            out[base + name] = v
    state = clip_g.state_dict()
    for layer in range(clip_g.config.num_hidden_layers):
        base = f"text_model.encoder.layers.{layer}.self_attn."
        for kind in ("weight", "bias"):
            out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(
                [state[base + f"{p}_proj.{kind}"] for p in ("q", "k", "v")]).contiguous()
    out[prefix + "logit_scale"] = torch.tensor(4.6052)
    return out


def write_single_file(path, unet, vae, clip_l, clip_g):
    """The tiny SDXL as sd_xl_base_1.0.safetensors lays it out (float16), checked with diffusers'
    own single-file converters."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint, convert_open_clip_checkpoint
    names = tm.unet_ldm_names(TINY_SDXL_UNET)
    names.update({"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"})
    sd = {"model.diffusion_model." + tm.rename(k, names): v for k, v in unet.state_dict().items()}
    sd.update(tm.to_ldm(None, vae, None, None, TINY_SDXL_VAE))
    sd.update({"conditioner.embedders.0.transformer." + tm.clip_key(k): v for k, v in clip_l.state_dict().items()})
    sd.update(openclip_state(clip_g))
    for converted, model in ((convert_ldm_unet_checkpoint(sd, dict(unet.config)), unet),
                             (convert_ldm_vae_checkpoint(sd, dict(vae.config)), vae),
                             (convert_open_clip_checkpoint(clip_g, sd, prefix="conditioner.embedders.1.model."), clip_g)):
        original = {tm.clip_key(k) if model is clip_g and not k.startswith("text_projection") else k: v
                    for k, v in model.state_dict().items()}
        for k, v in original.items():
            if k.endswith("position_ids"):
                continue
            assert k in converted and torch.equal(converted[k].float(), v.float()), k
    save_file({k: v.half().contiguous() for k, v in sd.items()}, path)
    print("wrote", os.path.relpath(path), f"({len(sd)} tensors)")


def make():
    torch.set_num_threads(1)
    unet, vae, clip_l, clip_g = make_models()
    save_folder(fixture_path("tiny-sdxl", "x")[:-2], unet, vae, clip_l, clip_g)
    write_single_file(fixture_path("tiny-sdxl.safetensors"), unet, vae, clip_l, clip_g)
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
    lora_reference(ref, pipe, unet, clip_l, clip_g)
    save(ref, fixture_path("sdxl-reference.safetensors"), metadata=meta)


LORA_STRENGTH = 0.8


def lora_reference(ref, pipe, unet, clip_l, clip_g):
    """A kohya SDXL LoRA (tiny-sdxl-lora.safetensors: rank 4, alpha 2; lora_unet_ with the UNet's
    LDM names, lora_te1_ and lora_te2_ for the two text encoders), and diffusers' outputs with it
    loaded (load_lora_weights) and fused at LORA_STRENGTH: lora.text.embeds, lora.text.pooled,
    lora.unet.output. Changes the models: run last."""
    g = torch.Generator().manual_seed(3131)
    names = tm.unet_ldm_names(TINY_SDXL_UNET)
    tensors = {}

    def add(key, module):
        out, inputs = module.weight.shape[0], module.weight.shape[1]
        tensors[key + ".lora_down.weight"] = (torch.randn(4, inputs, generator=g) * 0.2).half()
        tensors[key + ".lora_up.weight"] = (torch.randn(out, 4, generator=g) * 0.2).half()
        tensors[key + ".alpha"] = torch.tensor(2.0)

    for n, m in unet.named_modules():
        if ".attentions." in n and n.endswith((".to_q", ".to_k", ".to_v", ".to_out.0", ".ff.net.2")):
            add("lora_unet_" + tm.rename(n + ".weight", names)[:-len(".weight")].replace(".", "_"), m)
    for prefix, model in (("lora_te1_", clip_l), ("lora_te2_", clip_g)):
        for n, m in model.named_modules():
            if n.endswith((".q_proj", ".k_proj", ".v_proj", ".out_proj", ".fc1")):
                add(prefix + tm.clip_key(n).replace(".", "_"), m)
    path = fixture_path("tiny-sdxl-lora.safetensors")
    save_file(tensors, path)
    print("wrote Tests/Fixtures/tiny-sdxl-lora.safetensors", len(tensors), "tensors")
    pipe.load_lora_weights(path)
    pipe.fuse_lora(lora_scale=LORA_STRENGTH)
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(PROMPT, negative_prompt=NEGATIVE, do_classifier_free_guidance=True)
        ref["lora.text.embeds"], ref["lora.text.pooled"] = embeds, pooled
        ref["lora.unet.output"] = pipe.unet(ref["unet.sample"], ref["unet.timesteps"], encoder_hidden_states=ref["unet.context"],
                                            added_cond_kwargs={"text_embeds": ref["unet.text_embeds"], "time_ids": ref["unet.time_ids"]}).sample


if __name__ == "__main__":
    make()
