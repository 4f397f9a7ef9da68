"""Canny fixtures: five photo-like RGB images and OpenCV's edges of each (cv2.Canny on the RGB
array, as the ControlNet canny preprocessors of controlnet_aux, A1111 and ComfyUI's aux nodes call
it) at three threshold pairs. Writes Tests/Fixtures/canny/photo{0..4}.png and
Tests/Fixtures/canny/photo{i}-{low}-{high}.png (edges: 0 or 255, one channel).

The images: docs/images/photo.png, and four drawn scenes (gradients, shapes, texture, noise, blur)
with the statistics of photos: smooth areas, soft and hard edges, fine texture.
"""
import os

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from common import REPO, fixture_path

THRESHOLDS = [(100, 200), (50, 150), (200, 100)]


def scene(seed, size):
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([120 + 80 * np.sin(xx / (17 + seed) + c) * np.cos(yy / (23 + 2 * seed)) for c in range(3)], axis=2)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(10, w // 2), y0 + rng.integers(10, h // 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(radius=1.0 + seed % 2))
    noisy = np.asarray(image).astype(np.float32) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8))


def make():
    images = [Image.open(os.path.join(REPO, "docs", "images", "photo.png")).convert("RGB")]
    images += [scene(seed, size) for seed, size in ((1, (160, 120)), (2, (97, 131)), (3, (200, 150)), (4, (128, 128)))]
    for i, image in enumerate(images):
        image.save(fixture_path("canny", f"photo{i}.png"))
        rgb = np.asarray(image)
        for low, high in THRESHOLDS:
            edges = cv2.Canny(rgb, low, high)
            Image.fromarray(edges).save(fixture_path("canny", f"photo{i}-{low}-{high}.png"))
    print(f"wrote Tests/Fixtures/canny ({len(images)} images, cv2 {cv2.__version__})")


if __name__ == "__main__":
    make()
