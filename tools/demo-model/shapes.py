"""Procedural captioned scenes for the demo model: one shape of a named colour on a plain
background, e.g. "a red circle on a white background". Deterministic for a given seed."""
import math

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64

COLORS = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 60, 220), "yellow": (240, 210, 30),
    "purple": (140, 40, 170), "orange": (245, 130, 20), "white": (245, 245, 245), "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
SHAPE_COLORS = ["red", "green", "blue", "yellow", "purple", "orange"]
BACKGROUNDS = ["white", "black", "gray", "yellow", "blue", "green"]
SHAPES = ["circle", "square", "triangle", "star"]


def polygon(shape, cx, cy, r, angle):
    if shape == "square":
        return [(cx + r * math.cos(angle + k * math.pi / 2 + math.pi / 4) * 1.2,
                 cy + r * math.sin(angle + k * math.pi / 2 + math.pi / 4) * 1.2) for k in range(4)]
    if shape == "triangle":
        return [(cx + r * 1.2 * math.cos(angle - math.pi / 2 + k * 2 * math.pi / 3),
                 cy + r * 1.2 * math.sin(angle - math.pi / 2 + k * 2 * math.pi / 3)) for k in range(3)]
    if shape == "star":
        points = []
        for k in range(10):
            radius = r * 1.25 if k % 2 == 0 else r * 0.5
            a = angle - math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
        return points
    raise ValueError(shape)


def render(shape, color, background, cx=32.0, cy=32.0, r=16.0, angle=0.0, jitter=0.0, rng=None):
    """A 64x64 RGB scene (uint8 array), drawn at 4x and downsampled for smooth edges."""
    scale = 4
    bg = np.array(COLORS[background], dtype=np.float64)
    fg = np.array(COLORS[color], dtype=np.float64)
    if rng is not None and jitter > 0:
        bg = np.clip(bg + rng.normal(0, jitter, 3), 0, 255)
        fg = np.clip(fg + rng.normal(0, jitter, 3), 0, 255)
    image = Image.new("RGB", (SIZE * scale, SIZE * scale), tuple(int(v) for v in bg))
    draw = ImageDraw.Draw(image)
    fill = tuple(int(v) for v in fg)
    if shape == "circle":
        draw.ellipse([(cx - r) * scale, (cy - r) * scale, (cx + r) * scale, (cy + r) * scale], fill=fill)
    else:
        draw.polygon([(x * scale, y * scale) for x, y in polygon(shape, cx, cy, r, angle)], fill=fill)
    return np.asarray(image.resize((SIZE, SIZE), Image.LANCZOS))


def caption(shape, color, background):
    return f"a {color} {shape} on a {background} background"


def sample(rng):
    """A random scene and its caption."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    color = SHAPE_COLORS[rng.integers(len(SHAPE_COLORS))]
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    while background == color:
        background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    r = rng.uniform(10, 20)
    cx, cy = rng.uniform(r + 2, SIZE - r - 2, size=2)
    angle = rng.uniform(-0.4, 0.4)
    return render(shape, color, background, cx, cy, r, angle, jitter=8, rng=rng), caption(shape, color, background)
