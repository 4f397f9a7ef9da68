"""PyTorch/diffusers timings of the rows `sdflow bench model` measures, on the same checkpoint
(a diffusers folder) and thread count; prints JSON. Used by bench_compare.py.

    python bench_torch.py MODEL_FOLDER [--threads 2] [--only txt2img512,unet512] [--controlnet FOLDER]

With --controlnet (a diffusers ControlNetModel folder): controlnet512 (the net on the CFG batch)
and unet512_controlnet (the net, then the UNet with its residuals), as diffusers' pipelines run them.

An SDXL folder (with text_encoder_2/) gets SDXL's rows, as `sdflow bench model` measures them:
load, sdxl_turbo512 (StableDiffusionXLPipeline at 512x512, 1 euler_a step with trailing timesteps
at guidance 0, decoded), unet1024 and unet512 (one UNet call, batch 2), vae_decode1024.
"""
import os
import argparse
import json
import time

import torch
from diffusers import (AutoencoderKL, ControlNetModel, EulerAncestralDiscreteScheduler, StableDiffusionPipeline,
                       UNet2DConditionModel)
from transformers import CLIPTextModel

import tiny_models as tm
from make_sd15_model import tokenizer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only")
    parser.add_argument("--controlnet")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = set(args.only.split(",")) if args.only else None
    rows = []

    def timed(name, body):
        if wanted is not None and name not in wanted:
            return
        best = float("inf")
        for _ in range(max(args.repeats, 1)):
            start = time.perf_counter()
            body()
            best = min(best, time.perf_counter() - start)
        rows.append({"name": name, "seconds": best})

    if os.path.isdir(os.path.join(args.model, "text_encoder_2")):
        sdxl(args, timed, rows, wanted)
        print(json.dumps({"rows": rows, "threads": args.threads, "torch": torch.__version__}, indent=1))
        return
    start = time.perf_counter()
    unet = UNet2DConditionModel.from_pretrained(args.model, subfolder="unet").eval()
    vae = AutoencoderKL.from_pretrained(args.model, subfolder="vae").eval()
    clip = CLIPTextModel.from_pretrained(args.model, subfolder="text_encoder").eval()
    load = time.perf_counter() - start
    if wanted is None or "load" in wanted:
        rows.append({"name": "load", "seconds": load})
    tok = tokenizer()
    ids = tok(["a photo of an astronaut riding a horse on mars", ""], padding="max_length", max_length=77,
              return_tensors="pt").input_ids
    scheduler = EulerAncestralDiscreteScheduler.from_config({k: v for k, v in tm.SD15_SCHEDULER.items() if k != "_class_name"})
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=clip, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        timed("txt2img512", lambda: pipe("a photo of an astronaut riding a horse on mars", height=512, width=512,
                                          num_inference_steps=20, generator=torch.Generator().manual_seed(42)))
        timed("clip", lambda: clip(ids))
        context = clip(ids).last_hidden_state
        for size in (256, 512):
            latents = torch.full((2, 4, size // 8, size // 8), 0.1)
            t = torch.tensor([500, 500])
            timed(f"unet{size}", lambda: unet(latents, t, encoder_hidden_states=context))
            if size == 512 and args.controlnet:
                net = ControlNetModel.from_pretrained(args.controlnet).eval()
                hint = torch.full((2, 3, 512, 512), 0.5)

                def controlled():
                    down, mid = net(latents, t, encoder_hidden_states=context, controlnet_cond=hint, return_dict=False)
                    unet(latents, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid)

                timed("controlnet512", lambda: net(latents, t, encoder_hidden_states=context, controlnet_cond=hint, return_dict=False))
                timed("unet512_controlnet", controlled)
            image = torch.full((1, 3, size, size), 0.2)
            timed(f"vae_encode{size}", lambda: vae.encode(image).latent_dist.mean)
            z = torch.full((1, 4, size // 8, size // 8), 0.1)
            timed(f"vae_decode{size}", lambda: vae.decode(z).sample)
    print(json.dumps({"rows": rows, "threads": args.threads, "torch": torch.__version__}, indent=1))


def sdxl(args, timed, rows, wanted):
    from diffusers import StableDiffusionXLPipeline
    start = time.perf_counter()
    pipe = StableDiffusionXLPipeline.from_pretrained(args.model, variant="fp16", torch_dtype=torch.float32)
    load = time.perf_counter() - start
    if wanted is None or "load" in wanted:
        rows.append({"name": "load", "seconds": load})
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        timed("sdxl_turbo512", lambda: pipe("a cinematic photo of a fox in the snow", height=512, width=512, num_inference_steps=1,
                                             guidance_scale=0.0, generator=torch.Generator().manual_seed(42)))
        embeds, _, pooled, _ = pipe.encode_prompt("a cinematic photo of a fox in the snow", do_classifier_free_guidance=False)
        for size in (1024, 512):
            latents = torch.full((2, 4, size // 8, size // 8), 0.1)
            t = torch.tensor([500, 500])
            added = {"text_embeds": pooled.repeat(2, 1), "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2, dtype=torch.float32)}
            timed(f"unet{size}", lambda: pipe.unet(latents, t, encoder_hidden_states=embeds.repeat(2, 1, 1), added_cond_kwargs=added))
        z = torch.full((1, 4, 128, 128), 0.1)
        timed("vae_decode1024", lambda: pipe.vae.decode(z).sample)


if __name__ == "__main__":
    main()
