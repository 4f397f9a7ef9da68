"""Measures seams of a tiled VAE output: the mean jump between neighbouring pixel columns (and
rows) at every offset, compared where tiles meet (the blend bands of the tile grid) and inside
tiles. A visible seam is a jump at the tile borders well above the image's own jumps.

    python tools/seams.py TILED.png UNTILED.png --tile 512 --overlap 128 [--diff OUT.png]
    python tools/seams.py TILED.png UNTILED.png --tile 64 --overlap 16 --layout fitted --unit 8   # UNet tiles

--layout fitted places tiles as the tiled UNet does (as few whole tiles as cover the axis, spread
evenly); --unit is the pixels per tile unit (the VAE's cell size for UNet tiles given in latent cells).

Prints, for the tiled and the untiled image: the largest mean jump in the blend bands, the
largest elsewhere, and their ratio; and the largest and mean difference between the two images.
--diff writes the two images side by side with their difference (x4) under them.
"""
import argparse

import numpy as np
from PIL import Image


def jumps(pixels, axis):
    """Mean absolute difference between neighbours along `axis`, per position (length n - 1)."""
    d = np.abs(np.diff(pixels, axis=axis)).mean(axis=2)
    return d.mean(axis=1 - axis)


def border_mask(length, tile, overlap, layout="diffusers", unit=1):
    """Positions (between pixel i and i + 1) inside the blend bands of a tile grid: diffusers' (tiles every
    tile - overlap) or the fitted one (TilePlan's: whole tiles spread evenly), in units of `unit` pixels."""
    mask = np.zeros(length - 1, bool)
    cells = length // unit
    if layout == "diffusers":
        stride = tile - overlap
        bands = [(start, start + overlap) for start in range(stride, cells, stride)]
    else:
        count = (cells - overlap + tile - overlap - 1) // (tile - overlap) if cells > tile else 1
        starts = [((cells - tile) * i + (count - 1) // 2) // (count - 1) for i in range(count)] if count > 1 else [0]
        bands = [(starts[i + 1], starts[i] + tile) for i in range(count - 1)]  # where tile i and i + 1 overlap
    for begin, end in bands:
        mask[max(begin * unit - 1, 0):min(end * unit, length - 1)] = True
    return mask


def report(name, pixels, tile, overlap, layout="diffusers", unit=1):
    rows = []
    for axis, label in ((1, "columns"), (0, "rows")):
        j = jumps(pixels, axis)
        mask = border_mask(pixels.shape[axis], tile, overlap, layout, unit)
        if mask.any() and (~mask).any():
            rows.append((label, j[mask].max(), j[~mask].max(), j[mask].max() / j[~mask].max()))
    for label, border, inside, ratio in rows:
        print(f"{name} {label}: largest mean jump at tile borders {border:.4f}, inside tiles {inside:.4f}, ratio {ratio:.2f}")
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("tiled")
    p.add_argument("untiled")
    p.add_argument("--tile", type=int, required=True)
    p.add_argument("--overlap", type=int, required=True)
    p.add_argument("--layout", choices=["diffusers", "fitted"], default="diffusers")
    p.add_argument("--unit", type=int, default=1)
    p.add_argument("--diff")
    a = p.parse_args()
    tiled = np.asarray(Image.open(a.tiled).convert("RGB"), np.float32) / 255
    untiled = np.asarray(Image.open(a.untiled).convert("RGB"), np.float32) / 255
    report("tiled", tiled, a.tile, a.overlap, a.layout, a.unit)
    report("untiled", untiled, a.tile, a.overlap, a.layout, a.unit)
    diff = np.abs(tiled - untiled)
    print(f"tiled vs untiled: largest difference {diff.max():.4f}, mean {diff.mean():.4f} (of 1)")
    if a.diff:
        top = np.concatenate([untiled, tiled], axis=1)
        bottom = np.concatenate([np.clip(diff * 4, 0, 1), np.zeros_like(diff)], axis=1)
        Image.fromarray((np.concatenate([top, bottom], axis=0) * 255).astype(np.uint8)).save(a.diff)


if __name__ == "__main__":
    main()
