"""Tiny-model fixtures: a diffusers folder (Tests/Fixtures/tiny-sd), reference outputs of the
UNet (4 and 9 channels), VAE and CLIP text encoder computed by diffusers/transformers in
float32, and the LDM <-> diffusers key maps for the tiny and the SD 1.5 shapes.
"""
import json
import shutil

import torch

import tiny_models as tm
from common import fixture_path, save

ASTRONAUT = [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407]


def padded(ids, length=77, pad=49407):
    return ids + [pad] * (length - len(ids))


def make():
    g = torch.Generator().manual_seed(2024)
    unet = tm.make_unet(tm.TINY_UNET, g)
    vae = tm.make_vae(tm.TINY_VAE, g)
    clip = tm.make_clip(tm.TINY_CLIP, g)

    folder = fixture_path("tiny-sd", "x")[:-2]
    shutil.rmtree(folder, ignore_errors=True)
    # Three storage variants in one folder: F16 UNet, F16 VAE under the .fp16 name, BF16 text encoder.
    tm.save_diffusers_folder(folder, unet, vae, clip, "diffusion_pytorch_model.safetensors",
                             "diffusion_pytorch_model.fp16.safetensors", "model.safetensors",
                             torch.float16, torch.float16, torch.bfloat16)

    ref = {}
    with torch.no_grad():
        # Text encoder: last hidden state, the raw penultimate layer, and clip skip (final norm on it).
        ids = torch.tensor([padded(ASTRONAUT), padded([49406, 1929, 3086, 267, 539, 7720, 3365, 49407])])
        out = clip(ids, output_hidden_states=True)
        ref["clip.ids"] = ids.float()
        ref["clip.last"] = out.last_hidden_state
        ref["clip.penultimate"] = out.hidden_states[-2]
        ref["clip.skip1"] = clip.final_layer_norm(out.hidden_states[-2])

        # UNet, batch of two with different timesteps.
        sample = torch.randn(2, 4, 16, 16, generator=g)
        context = torch.randn(2, 77, 16, generator=g)
        timesteps = torch.tensor([999.0, 261.0])
        ref["unet.sample"], ref["unet.context"], ref["unet.timesteps"] = sample, context, timesteps
        ref["unet.output"] = unet(sample, timesteps, encoder_hidden_states=context).sample
        # A latent size that is not a multiple of 4: upsampling follows the skip sizes.
        odd = torch.randn(1, 4, 10, 14, generator=g)
        ref["unet.odd_sample"] = odd
        ref["unet.odd_output"] = unet(odd, torch.tensor([500.0]), encoder_hidden_states=context[:1]).sample

        # 9-channel inpainting UNet: the same weights but conv_in over latent + mask + masked latent.
        unet9 = tm.make_unet({**tm.TINY_UNET, "in_channels": 9})
        state = unet.state_dict()
        conv_in = (torch.randn(16, 9, 3, 3, generator=g) / (9 * 9) ** 0.5).half().float()
        state["conv_in.weight"] = conv_in
        unet9.load_state_dict(state)
        unet9.eval()
        sample9 = torch.randn(2, 9, 16, 16, generator=g)
        ref["unet9.conv_in_weight"] = conv_in
        ref["unet9.sample"] = sample9
        ref["unet9.output"] = unet9(sample9, timesteps, encoder_hidden_states=context).sample

        # VAE: posterior, scaled latents (mean and sampled), decode.
        image = (torch.rand(1, 3, 32, 32, generator=g) * 2 - 1)
        posterior = vae.encode(image).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=g)
        ref["vae.image"] = image
        ref["vae.mean"] = posterior.mean
        ref["vae.logvar"] = posterior.logvar
        ref["vae.noise"] = noise
        ref["vae.latents"] = posterior.mean * vae.config.scaling_factor
        ref["vae.sampled_latents"] = (posterior.mean + posterior.std * noise) * vae.config.scaling_factor
        ref["vae.decoded"] = vae.decode(ref["vae.latents"] / vae.config.scaling_factor).sample
    save(ref, fixture_path("tiny-sd-reference.safetensors"))

    # Key maps, verified by diffusers' LDM -> diffusers converters on real tensors (tiny) ...
    ldm = tm.to_ldm(unet, vae, clip, tm.TINY_UNET, tm.TINY_VAE)
    tm.verify_ldm(ldm, unet, vae, clip, tm.TINY_UNET, tm.TINY_VAE)
    maps = {"tiny": tm.key_map(unet, vae, clip, tm.TINY_UNET, tm.TINY_VAE)}
    # ... and on the full SD 1.5 shapes, built on the meta device (no memory).
    with torch.device("meta"):
        unet15, vae15, clip15 = tm.make_unet(tm.SD15_UNET), tm.make_vae(tm.SD15_VAE), tm.make_clip(tm.SD15_CLIP)
    ldm15 = tm.to_ldm(unet15, vae15, clip15, tm.SD15_UNET, tm.SD15_VAE)
    tm.verify_ldm(ldm15, unet15, vae15, clip15, tm.SD15_UNET, tm.SD15_VAE)
    maps["sd15"] = tm.key_map(unet15, vae15, clip15, tm.SD15_UNET, tm.SD15_VAE)
    maps["sd15_shapes"] = {k: list(v.shape) for k, v in ldm15.items()}
    with open(fixture_path("ldm-keymap.json"), "w") as f:
        json.dump(maps, f, indent=0, sort_keys=True)
    print("wrote key maps:", {k: {c: len(v) for c, v in m.items()} if k != "sd15_shapes" else len(m) for k, m in maps.items()})


if __name__ == "__main__":
    make()
