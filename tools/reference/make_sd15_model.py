"""Writes a random-weight model of the exact SD 1.5 architecture (859,520,964 UNet parameters)
in both checkpoint layouts and both precisions, plus reference outputs, for sdflow's opt-in
full-size tests and benchmarks. Large (about 9 GB in all); never committed.

    python make_sd15_model.py OUT_DIR

OUT_DIR/diffusers-f32/          diffusers folder, float32
OUT_DIR/diffusers-f16/          diffusers folder, *.fp16.safetensors (float16)
OUT_DIR/sd15-f32.safetensors    single-file LDM layout, float32
OUT_DIR/sd15-f16.safetensors    single-file LDM layout, float16
OUT_DIR/reference.safetensors   inputs and diffusers/transformers outputs (float32)
OUT_DIR/taesd/, taesd_encoder.safetensors, taesd_decoder.safetensors
                                a random TAESD of the real architecture (diffusers AutoencoderTiny defaults), in the
                                diffusers and the original layout; taesd-reference.safetensors: its encode of a
                                256x256 image and decode of those latents
OUT_DIR/lora-kohya.safetensors  a random rank-8 kohya LoRA (float16) on every attention, feed-forward and
                                projection layer, a few convolutions and the text encoder's layers
                                (reference.safetensors: lora.* with it fused by diffusers at strength 0.8)

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
        long_prompt(ref, clip, unet, tok, sample, timesteps)
    write_taesd(out)
    lora_reference(ref, out, unet, vae, clip, tok, ids, sample, timesteps)
    save_file({k: v.clone().contiguous() for k, v in ref.items()}, os.path.join(out, "reference.safetensors"))
    print("wrote reference.safetensors", flush=True)


def long_prompt(ref, clip, unet, tok, sample, timesteps):
    """long.cond: fixtures_prompts.WEIGHTED_LONG (two chunks) with A1111 weighting; long.unet.output: the
    UNet on it (154 context tokens); the metadata-free prompt text is fixtures_prompts' own."""
    import fixtures_prompts as fp
    comma = tok.convert_tokens_to_ids(",</w>")
    ids, weights = fp.tokenize_line(tok, comma, fp.WEIGHTED_LONG, "a1111")
    ref["long.cond"] = fp.conditioning(clip, ids, weights, "a1111", 1)
    context = ref["long.cond"].expand(2, -1, -1)
    ref["long.unet.output"] = unet(sample, timesteps, encoder_hidden_states=context).sample


def write_taesd(out):
    from diffusers import AutoencoderTiny
    torch.manual_seed(606)
    taesd = AutoencoderTiny().eval()
    with torch.no_grad():
        for p in taesd.parameters():
            p.copy_(p.half().float())
    taesd.save_pretrained(os.path.join(out, "taesd"), safe_serialization=True)
    enc, dec = {}, {}
    for k, v in taesd.state_dict().items():
        part, _, index, rest = k.split(".", 3)
        (enc if part == "encoder" else dec)[f"{index if part == 'encoder' else int(index) + 1}.{rest}"] = v.half().contiguous()
    save_file(enc, os.path.join(out, "taesd_encoder.safetensors"))
    save_file(dec, os.path.join(out, "taesd_decoder.safetensors"))
    g = torch.Generator().manual_seed(607)
    with torch.no_grad():
        image = torch.rand(1, 3, 256, 256, generator=g) * 2 - 1
        latents = taesd.encode(image).latents
        ref = {"image": image, "latents": latents, "decoded": taesd.decode(latents).sample}
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(out, "taesd-reference.safetensors"))
    print("wrote taesd/, taesd_encoder.safetensors, taesd_decoder.safetensors, taesd-reference.safetensors", flush=True)


LORA_RANK, LORA_ALPHA, LORA_STRENGTH = 8, 4.0, 0.8


def lora_reference(ref, out, unet, vae, clip, tok, ids, sample, timesteps):
    """Writes lora-kohya.safetensors and, with diffusers' load_lora_weights + fuse_lora at
    LORA_STRENGTH: lora.clip (last_hidden_state of PROMPTS) and lora.unet.output (the UNet on
    unet.sample at unet.timesteps with lora.clip as context). Changes the models: run last."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    g = torch.Generator().manual_seed(88)
    convs = ["down_blocks.0.resnets.0.conv1", "mid_block.resnets.0.conv2", "up_blocks.1.upsamplers.0.conv"]
    tensors = {}
    targets = [("unet", n, m) for n, m in unet.named_modules()
               if (".attentions." in n and n.endswith((".to_q", ".to_k", ".to_v", ".to_out.0", ".ff.net.0.proj", ".ff.net.2",
                                                          ".proj_in", ".proj_out"))) or n in convs]
    targets += [("text_encoder", n, m) for n, m in clip.named_modules()
                if n.endswith((".q_proj", ".k_proj", ".v_proj", ".out_proj", ".fc1", ".fc2"))]
    for component, name, m in targets:
        if isinstance(m, torch.nn.Linear):
            down_shape, up_shape, fan_in = (LORA_RANK, m.in_features), (m.out_features, LORA_RANK), m.in_features
        else:
            down_shape, up_shape = (LORA_RANK, m.in_channels, *m.kernel_size), (m.out_channels, LORA_RANK, 1, 1)
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        key = "lora_unet_" + name.replace(".", "_") if component == "unet" else \
            "lora_te_" + (name if name.startswith("text_model.") else "text_model." + name).replace(".", "_")
        tensors[key + ".lora_down.weight"] = (torch.randn(down_shape, generator=g) / fan_in ** 0.5).half()
        tensors[key + ".lora_up.weight"] = (torch.randn(up_shape, generator=g) * 0.05).half()
        tensors[key + ".alpha"] = torch.tensor(LORA_ALPHA, dtype=torch.float16)
    path = os.path.join(out, "lora-kohya.safetensors")
    save_file(tensors, path)
    print("wrote lora-kohya.safetensors", len(tensors) // 3, "modules", flush=True)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=clip, tokenizer=tok, unet=unet, scheduler=EulerDiscreteScheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights(path)
    pipe.fuse_lora(lora_scale=LORA_STRENGTH)
    with torch.no_grad():
        ref["lora.clip"] = clip(ids).last_hidden_state
        ref["lora.unet.output"] = unet(sample, timesteps, encoder_hidden_states=ref["lora.clip"]).sample


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
