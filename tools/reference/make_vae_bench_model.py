"""Writes a diffusers folder for the big-image benchmarks: SD 1.5's VAE (the exact architecture,
random weights, float32) with the tiny UNet and text encoder of Tests/Fixtures/tiny-sd, so a
workflow can load it with load_checkpoint and time the VAE at photo sizes without the 9 GB of the
full model (make_sd15_model.py). Also writes a 2048x1536 test photo (gradients, shapes and fine
texture, so that seams would show) and its 4032x3024 counterpart.

    python make_vae_bench_model.py OUT_DIR
"""
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

import tiny_models as tm
from common import FIXTURES


def photo(width, height, seed=5):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    rgb = np.stack([0.5 + 0.4 * np.sin(6 * x + 1), 0.5 + 0.4 * np.cos(5 * y + 2 * x), 0.4 + 0.3 * x * y * 4 % 1], -1)
    rgb += 0.04 * rng.standard_normal((height, width, 3))
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        cx, cy, r = rng.integers(0, width), rng.integers(0, height), rng.integers(width // 40, width // 8)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def main(out):
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(os.path.join(FIXTURES, "tiny-sd"), out)
    shutil.rmtree(os.path.join(out, "vae"))
    vae = tm.make_vae(tm.SD15_VAE, torch.Generator().manual_seed(15))
    vae.save_pretrained(os.path.join(out, "vae"), safe_serialization=True)
    photo(2048, 1536).save(os.path.join(out, "photo-2048x1536.png"))
    photo(4032, 3024).save(os.path.join(out, "photo-4032x3024.png"))
    photo(512, 512).save(os.path.join(out, "photo-512x512.png"))
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1])
