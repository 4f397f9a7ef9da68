"""Trains sdflow's demo model: an SD-1.x-shaped latent diffusion model (AutoencoderKL, CLIP text
encoder over the real CLIP tokenizer, UNet with cross-attention) on procedurally rendered 64x64
scenes of coloured shapes ("a red circle on a white background"), with classifier-free-guidance
dropout; then fine-tunes the VAE decoder on the latents the diffusion model produces. Seeded and resumable (state is saved every few minutes to --work); about an hour on two
CPU cores. Writes the diffusers folder (F16 safetensors) to --out.

    python tools/demo-model/train.py --out models/sdflow-demo --work /tmp/sdflow-demo-train

Uses the reference venv (tools/reference/requirements.txt).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import shapes  # noqa: E402
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

import tiny_models as tm  # noqa: E402
from make_sd15_model import tokenizer  # noqa: E402

VAE_CONFIG = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 32), layers_per_block=1,
                  latent_channels=4, norm_num_groups=8, sample_size=64)
# Cross-attention at 8x8 and 4x4 only: attention over the 256 positions of the 16x16 level took
# half of each training step; without it twice the steps fit in the hour, which steers colour better.
UNET_CONFIG = dict(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64),
                   down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                   layers_per_block=1, cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
CLIP_CONFIG = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                   max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=1)


BATCH = 32


def dataset(path, count, seed):
    """`count` rendered scenes and captions, cached as .npz."""
    if os.path.exists(path):
        data = np.load(path)
        return data["images"], list(data["captions"])
    rng = np.random.default_rng(seed)
    images, captions = [], []
    for _ in range(count):
        image, text = shapes.sample(rng)
        images.append(image)
        captions.append(text)
    images = np.stack(images)
    np.savez(path, images=images, captions=np.array(captions))
    return images, captions


def to_tensor(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


class Checkpointer:
    """Saves and restores training state so an interrupted run resumes."""

    def __init__(self, path, every_seconds=180):
        self.path, self.every, self.last = path, every_seconds, time.time()

    def load(self):
        return torch.load(self.path, weights_only=False) if os.path.exists(self.path) else None

    def maybe_save(self, state, force=False):
        if force or time.time() - self.last > self.every:
            torch.save(state, self.path + ".tmp")
            os.replace(self.path + ".tmp", self.path)
            self.last = time.time()


def train_vae_stage(name, vae, optimizer, saver, steps, rng_seed, loss_at):
    """The resumable loop of the two VAE stages: loss_at(rng) gives a batch's loss; the state
    saved is the VAE, the optimizer, the step and torch's RNG. Returns the VAE in eval mode."""
    start = 0
    if (state := saver.load()) is not None:
        vae.load_state_dict(state["model"]); optimizer.load_state_dict(state["optimizer"]); start = state["step"]
        torch.set_rng_state(state["rng"])
    rng = np.random.default_rng(rng_seed + start)

    def state(step):
        return {"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "rng": torch.get_rng_state()}

    for step in range(start, steps):
        loss = loss_at(rng)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"{name} step {step}/{steps}: loss {loss.item():.4f}", flush=True)
        saver.maybe_save(state(step + 1))
    saver.maybe_save(state(steps), force=True)
    return vae.eval()


def train_vae(images, work, steps, seed):
    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=4e-4, weight_decay=0)
    vae.train()

    def loss_at(rng):
        batch = to_tensor(images[rng.integers(0, len(images), 16)])
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample()).sample
        kl = posterior.kl().mean() / (64 * 64 * 3)
        return F.l1_loss(recon, batch) + 0.5 * F.mse_loss(recon, batch) + 1e-4 * kl

    return train_vae_stage("vae", vae, optimizer, Checkpointer(os.path.join(work, "vae.pt")), steps, seed, loss_at)


@torch.no_grad()
def encode_all(vae, images):
    latents = []
    for i in range(0, len(images), 256):
        latents.append(vae.encode(to_tensor(images[i:i + 256])).latent_dist.mean)
    latents = torch.cat(latents)
    scaling = 1 / latents.std().item()
    return latents * scaling, scaling


def train_diffusion(latents, captions, work, steps, seed):
    torch.manual_seed(seed + 1)
    tok = tokenizer()
    ids = torch.tensor(tok(captions, padding="max_length", max_length=77, truncation=True).input_ids)
    empty = torch.tensor(tok([""], padding="max_length", max_length=77).input_ids)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    clip = CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG))
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    params = list(unet.parameters()) + list(clip.parameters())
    optimizer = torch.optim.AdamW(params, lr=5e-4, weight_decay=1e-4)
    schedule = DDPMScheduler.from_config({k: v for k, v in tm.SD15_SCHEDULER.items() if k != "_class_name"})
    alphas = schedule.alphas_cumprod
    saver = Checkpointer(os.path.join(work, "diffusion.pt"))
    start = 0
    if (state := saver.load()) is not None:
        unet.load_state_dict(state["unet"]); clip.load_state_dict(state["clip"]); ema = state["ema"]
        optimizer.load_state_dict(state["optimizer"]); start = state["step"]; torch.set_rng_state(state["rng"])
    rng = np.random.default_rng(seed + 7 + start)
    unet.train(); clip.train()
    for step in range(start, steps):
        lr = 5e-4 * min(1, (step + 1) / 300) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = rng.integers(0, len(latents), BATCH)
        x0 = latents[index]
        tokens = ids[index].clone()
        drop = torch.from_numpy(rng.random(BATCH) < 0.1)
        tokens[drop] = empty  # classifier-free guidance: 10% unconditional
        t = torch.from_numpy(rng.integers(0, 1000, BATCH))
        noise = torch.randn_like(x0)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        context = clip(tokens).last_hidden_state
        loss = F.mse_loss(unet(xt, t, encoder_hidden_states=context).sample, noise)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for k, v in unet.state_dict().items():
                ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay) if v.dtype.is_floating_point else ema[k].copy_(v)
        if step % 100 == 0:
            print(f"diffusion step {step}/{steps}: loss {loss.item():.4f} lr {lr:.2e}", flush=True)
        saver.maybe_save({"unet": unet.state_dict(), "clip": clip.state_dict(), "ema": ema, "optimizer": optimizer.state_dict(),
                          "step": step + 1, "rng": torch.get_rng_state()})
    saver.maybe_save({"unet": unet.state_dict(), "clip": clip.state_dict(), "ema": ema, "optimizer": optimizer.state_dict(),
                      "step": steps, "rng": torch.get_rng_state()}, force=True)
    unet.load_state_dict(ema)
    # Token rows no caption uses stay as initialised noise; zero them (they compress, and mean nothing).
    used = torch.zeros(CLIP_CONFIG["vocab_size"], dtype=torch.bool)
    used[ids.flatten()] = True
    used[empty.flatten()] = True
    with torch.no_grad():
        clip.embeddings.token_embedding.weight[~used] = 0
    return unet.eval(), clip.eval()


def finetune_decoder(vae, latents, images, work, steps, seed):
    """Trains the decoder alone (the encoder, so the latents, stay as they are) on the posterior
    means the diffusion model was trained on: the VAE stage decoded noisy samples, which leaves
    edges soft and colours washed towards the background (a red shape on white came back orange)."""
    torch.manual_seed(seed + 2)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=0)
    vae.decoder.train()

    def loss_at(rng):
        index = rng.integers(0, len(images), 16)
        recon = vae.decode(latents[index]).sample
        target = to_tensor(images[index])
        return F.l1_loss(recon, target) + 0.5 * F.mse_loss(recon, target)

    return train_vae_stage("decoder", vae, optimizer, Checkpointer(os.path.join(work, "decoder.pt")), steps, seed + 11, loss_at)


def export(out, unet, vae, clip, scaling):
    vae.register_to_config(scaling_factor=scaling)
    tm.save_diffusers_folder(out, unet, vae, clip, "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors",
                             "model.safetensors", torch.float16, torch.float16, torch.float16)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("# sdflow demo model\n\nA tiny SD-1.x-shaped latent diffusion model trained by `tools/demo-model/train.py` on\n"
                "64x64 rendered scenes of one coloured shape on a plain background. It understands prompts like\n"
                "\"a red circle on a white background\" (shapes: circle, square, triangle, star; colours: red,\n"
                "green, blue, yellow, purple, orange; backgrounds: white, black, gray, yellow, blue, green) and\n"
                "nothing else. It is a demonstration, not a general image model.\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(HERE, "..", "..", "models", "sdflow-demo"))
    parser.add_argument("--work", default="/tmp/sdflow-demo-train")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--unet-steps", type=int, default=8000)
    parser.add_argument("--decoder-steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    started = time.time()
    images, captions = dataset(os.path.join(args.work, "scenes.npz"), args.images, args.seed)
    print(f"dataset: {len(images)} scenes ({time.time() - started:.0f}s)", flush=True)
    vae = train_vae(images, args.work, args.vae_steps, args.seed)
    print(f"vae done ({time.time() - started:.0f}s)", flush=True)
    latents, scaling = encode_all(vae, images)
    print(f"latents {tuple(latents.shape)}, scaling factor {scaling:.5f}", flush=True)
    unet, clip = train_diffusion(latents, captions, args.work, args.unet_steps, args.seed)
    print(f"diffusion done ({time.time() - started:.0f}s)", flush=True)
    vae = finetune_decoder(vae, latents.detach() / scaling, images, args.work, args.decoder_steps, args.seed)
    export(os.path.abspath(args.out), unet, vae, clip, scaling)
    with open(os.path.join(args.work, "done.json"), "w") as f:
        json.dump({"seconds": time.time() - started, "scaling_factor": scaling}, f)
    print(f"wrote {args.out} in {time.time() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
