"""Image fixtures: PNG files of every colour type and bit depth (written with pypng, which also
writes interlaced and 16-bit colour PNGs), JPEG variants (Pillow, plus a YCCK file written by a
small libjpeg program), and the pixels Pillow/pypng decode from them; Pillow resize references.

Writes Tests/Fixtures/images/*.png|jpg and Tests/Fixtures/images-expected.safetensors, where
each file's expected pixels are a (C, H, W) float tensor in [0, 1] named after the file.
"""
import io
import os
import subprocess
import tempfile

import numpy as np
import png
import torch
from PIL import Image, ImageOps

from common import HERE_REFERENCE, fixture_path, save

W, H = 13, 9


def photo(w, h, seed=0):
    """A deterministic synthetic RGB image with gradients, edges and noise (uint8, H x W x 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    r = (x / max(w - 1, 1) * 255)
    g = (y / max(h - 1, 1) * 255)
    b = ((x + y) % 7 < 3) * 200 + 30
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 12, (h, w, 3))
    img[h // 3: 2 * h // 3, w // 4: w // 2] = [250, 20, 60]
    return np.clip(img, 0, 255).round().astype(np.uint8)


def planar(array, maximum):
    """(H, W[, C]) integers -> (C, H, W) float tensor in [0, 1]."""
    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.tensor((a / maximum).transpose(2, 0, 1), dtype=torch.float32)


def write_png_variants(folder, expected):
    rng = np.random.default_rng(1)
    variants = []
    for depth in (1, 2, 4, 8, 16):
        variants.append((f"gray{depth}", dict(greyscale=True, bitdepth=depth), 1, depth))
    for depth in (8, 16):
        variants.append((f"graya{depth}", dict(greyscale=True, alpha=True, bitdepth=depth), 2, depth))
        variants.append((f"rgb{depth}", dict(greyscale=False, bitdepth=depth), 3, depth))
        variants.append((f"rgba{depth}", dict(greyscale=False, alpha=True, bitdepth=depth), 4, depth))
    for name, options, channels, depth in variants:
        for interlace in (False, True):
            if interlace and name not in ("gray4", "rgb8", "rgba16"):
                continue
            values = rng.integers(0, 2 ** depth, size=(H, W * channels))
            file = f"{name}{'-interlaced' if interlace else ''}.png"
            with open(os.path.join(folder, file), "wb") as f:
                png.Writer(W, H, interlace=interlace, **options).write(f, values.tolist())
            # pypng reads back the exact samples; libpng expands low-bit gray to 8 bits (v * 255 / max).
            _, _, rows, _ = png.Reader(filename=os.path.join(folder, file)).read()
            expected[file] = planar(np.array(list(rows)).reshape(H, W, channels), 2 ** depth - 1)
    # Palettes with transparency (tRNS), at 2, 4 and 8 bits.
    for depth in (2, 4, 8):
        count = 2 ** depth
        palette = [(int(rng.integers(256)), int(rng.integers(256)), int(rng.integers(256)), int(rng.integers(256)))
                   for _ in range(count)]
        indices = rng.integers(0, count, size=(H, W))
        file = f"palette{depth}.png"
        with open(os.path.join(folder, file), "wb") as f:
            png.Writer(W, H, palette=palette, bitdepth=depth).write(f, indices.tolist())
        rgba = np.array([palette[i] for i in indices.flatten()]).reshape(H, W, 4)
        expected[file] = planar(rgba, 255)
        # Pillow agrees on the pixels.
        assert np.array_equal(np.asarray(Image.open(os.path.join(folder, file)).convert("RGBA")), rgba)
    # A PNG with text chunks (tEXt, iTXt).
    file = "text.png"
    info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
    info.add_text("parameters", "a red circle\nSteps: 20, Seed: 42")
    info.add_itxt("sdflow:workflow", "prompt: café ☕")
    Image.fromarray(photo(W, H)).save(os.path.join(folder, file), pnginfo=info)
    expected[file] = planar(photo(W, H), 255)


def write_jpeg_variants(folder, expected):
    rgb = photo(40, 24, seed=3)
    variants = {
        "baseline.jpg": dict(image=Image.fromarray(rgb), quality=90),
        "progressive.jpg": dict(image=Image.fromarray(rgb), quality=85, progressive=True),
        "gray.jpg": dict(image=Image.fromarray(rgb).convert("L"), quality=90),
        "cmyk.jpg": dict(image=Image.fromarray(rgb).convert("CMYK"), quality=95),
    }
    for orientation in (3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        variants[f"exif{orientation}.jpg"] = dict(image=Image.fromarray(rgb), quality=90, exif=exif.tobytes())
    for file, options in variants.items():
        image = options.pop("image")
        image.save(os.path.join(folder, file), **options)
    with tempfile.TemporaryDirectory() as build:
        # YCCK: Pillow cannot write it; a ten-line libjpeg program can.
        binary = os.path.join(build, "ycck_writer")
        subprocess.run(["gcc", "-O1", os.path.join(HERE_REFERENCE, "ycck_writer.c"), "-ljpeg", "-o", binary], check=True)
        cmyk = np.asarray(Image.fromarray(rgb).convert("CMYK"))
        raw = os.path.join(build, "cmyk.raw")
        (255 - cmyk).astype(np.uint8).tofile(raw)  # Adobe-style inverted CMYK samples
        subprocess.run([binary, raw, str(rgb.shape[1]), str(rgb.shape[0]), os.path.join(folder, "ycck.jpg")], check=True)
    for file in list(variants) + ["ycck.jpg"]:
        image = ImageOps.exif_transpose(Image.open(os.path.join(folder, file)))
        mode = "L" if image.mode == "L" else "RGB"
        expected[file] = planar(np.asarray(image.convert(mode)), 255)


def write_resize_references(expected):
    source = photo(37, 23, seed=5)
    expected["resize.source"] = planar(source, 255)
    filters = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
    for name, f in filters.items():
        for (w, h) in ((64, 40), (16, 11), (37, 12), (50, 23), (9, 5)):
            out = Image.fromarray(source).resize((w, h), f)
            expected[f"resize.{name}.{w}x{h}"] = planar(np.asarray(out), 255)


def write_bombs(folder):
    """Tiny files that claim huge images: decoders must refuse them before allocating."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    with open(os.path.join(folder, "bomb.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    buffer = io.BytesIO()
    Image.fromarray(photo(16, 16)).save(buffer, "JPEG", quality=80)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    with open(os.path.join(folder, "bomb.jpg"), "wb") as f:
        f.write(bytes(data))


def make():
    folder = fixture_path("images", "x")[:-2]
    os.makedirs(folder, exist_ok=True)
    expected = {}
    write_png_variants(folder, expected)
    write_jpeg_variants(folder, expected)
    write_resize_references(expected)
    write_bombs(folder)
    save(expected, fixture_path("images-expected.safetensors"))


if __name__ == "__main__":
    make()
