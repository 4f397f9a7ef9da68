"""Writes the example inputs of the bundled workflows (examples/), drawn like the demo model's
training scenes: a photo, an inpainting mask around its shape, and a folder of photos."""
import os

import numpy as np
from PIL import Image

import shapes

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "..", "examples")


def main():
    os.makedirs(os.path.join(EXAMPLES, "photos"), exist_ok=True)
    photo = shapes.render("circle", "red", "white", cx=32, cy=32, r=15)
    Image.fromarray(photo).save(os.path.join(EXAMPLES, "photo.png"))
    mask = np.zeros((shapes.SIZE, shapes.SIZE), dtype=np.uint8)
    mask[12:52, 12:52] = 255  # a square around the circle
    Image.fromarray(mask, "L").save(os.path.join(EXAMPLES, "mask.png"))
    scenes = [("square", "blue", "white"), ("triangle", "green", "black"), ("star", "yellow", "blue"),
              ("circle", "purple", "gray"), ("square", "orange", "green")]
    rng = np.random.default_rng(3)
    for i, (shape, color, background) in enumerate(scenes):
        image = shapes.render(shape, color, background, cx=rng.uniform(24, 40), cy=rng.uniform(24, 40), r=14)
        Image.fromarray(image).save(os.path.join(EXAMPLES, "photos", f"{i + 1:02d}-{color}-{shape}.png"))
    print("wrote", os.path.abspath(EXAMPLES))


if __name__ == "__main__":
    main()
