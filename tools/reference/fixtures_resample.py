"""Latent resizing fixtures: torch.nn.functional.interpolate (align_corners=False, no antialias) of a
random latent to larger, smaller and mixed sizes in each mode upscale_latent offers.

Writes Tests/Fixtures/resample.safetensors: "input" (1, 4, 13, 17) and "MODE.HxW" for each size.
"""
import torch
import torch.nn.functional as F

from common import fixture_path, save

SIZES = [(20, 26), (26, 34), (9, 11), (13, 40), (1, 1)]
MODES = ["nearest", "nearest-exact", "bilinear", "bicubic"]


def make():
    g = torch.Generator().manual_seed(31)
    x = torch.randn(1, 4, 13, 17, generator=g)
    ref = {"input": x}
    for mode in MODES:
        for h, w in SIZES:
            kwargs = {} if mode.startswith("nearest") else {"align_corners": False}
            ref[f"{mode}.{h}x{w}"] = F.interpolate(x, size=(h, w), mode=mode, **kwargs)
    save(ref, fixture_path("resample.safetensors"))


if __name__ == "__main__":
    make()
