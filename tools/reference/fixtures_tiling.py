"""Tiled VAE fixtures: diffusers' `enable_vae_tiling()` on the tiny VAE of Tests/Fixtures/tiny-sd
(4-pixel cells) at two tilings, on an image whose size leaves thin last tiles along both axes.

Writes Tests/Fixtures/vae-tiling.safetensors: the image, and per tiling T (tile size and overlap in
pixels, e.g. "32_8") the posterior mean and log-variance of the tiled encode and the tiled decode of
given scaled latents; plus the untiled results, to measure how far tiling moves them.
"""
import torch
from diffusers import AutoencoderKL

from common import fixture_path, save

TILINGS = [(32, 8), (40, 16)]  # tile size, overlap (pixels): overlap factors 0.25 (diffusers' default) and 0.4


def make():
    vae = AutoencoderKL.from_pretrained(fixture_path("tiny-sd", "vae"), variant="fp16", torch_dtype=torch.float32)
    vae.eval()
    g = torch.Generator().manual_seed(77)
    image = torch.rand(1, 3, 76, 100, generator=g) * 2 - 1
    latents = torch.randn(1, 4, 19, 25, generator=g)  # scaled, as the pipeline gives them to decode
    ref = {"image": image, "latents": latents}
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    with torch.no_grad():
        posterior = vae.encode(image).latent_dist
        ref["untiled.mean"], ref["untiled.logvar"] = posterior.mean, posterior.logvar
        ref["untiled.decoded"] = vae.decode(latents / vae.config.scaling_factor).sample
        vae.enable_tiling()
        for tile, overlap in TILINGS:
            vae.tile_sample_min_size = tile
            vae.tile_latent_min_size = tile // factor
            vae.tile_overlap_factor = overlap / tile
            # The rule in whole numbers, as sdflow states it: strides tile - overlap, blends over the overlap.
            assert int(tile * (1 - vae.tile_overlap_factor)) == tile - overlap
            assert int(vae.tile_latent_min_size * vae.tile_overlap_factor) == overlap // factor
            assert int(vae.tile_latent_min_size * (1 - vae.tile_overlap_factor)) == (tile - overlap) // factor
            assert int(tile * vae.tile_overlap_factor) == overlap
            posterior = vae.encode(image).latent_dist
            ref[f"{tile}_{overlap}.mean"], ref[f"{tile}_{overlap}.logvar"] = posterior.mean, posterior.logvar
            ref[f"{tile}_{overlap}.decoded"] = vae.decode(latents / vae.config.scaling_factor).sample
    save(ref, fixture_path("vae-tiling.safetensors"))


if __name__ == "__main__":
    make()
