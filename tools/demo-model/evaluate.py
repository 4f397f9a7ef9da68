"""Measures a demo model in diffusers the way DemoModelTests measures it in sdflow: txt2img of
"a red circle" / "a blue square" / "a green star" on a white background for 20 seeds each, and
how often the shape's mean colour is nearest to the prompt's colour. Quick feedback while
training; the test through sdflow is what counts.

    python tools/demo-model/evaluate.py models/sdflow-demo [--cfg 7.5] [--steps 20] [--seeds 20]
"""
import argparse
import os
import sys
from collections import Counter

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import shapes  # noqa: E402
from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline  # noqa: E402

from make_sd15_model import tokenizer  # noqa: E402

PROMPTS = [("red", "circle"), ("blue", "square"), ("green", "star")]


def foreground(image):
    """Pixels (H, W) differing from the mean colour of the 2-pixel border by more than 0.25."""
    border = np.concatenate([image[:2].reshape(-1, 3), image[-2:].reshape(-1, 3),
                             image[:, :2].reshape(-1, 3), image[:, -2:].reshape(-1, 3)]).mean(0)
    return np.abs(image - border).max(-1) > 0.25


def dominant_colour(image, select):
    """The shape colour nearest to the mean of the selected pixels, or "none"."""
    if select.sum() < 10:
        return "none"
    mean = image[select].mean(0)
    return min(shapes.SHAPE_COLORS, key=lambda c: ((np.array(shapes.COLORS[c]) / 255 - mean) ** 2).sum())


def load(path):
    pipe = StableDiffusionPipeline.from_pretrained(path, tokenizer=tokenizer(), safety_checker=None,
                                                   feature_extractor=None, requires_safety_checker=False,
                                                   torch_dtype=torch.float32)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evaluate(pipe, cfg, steps, seeds, save=None):
    """The match rate over all prompts and the confusion counts per prompt colour."""
    confusion, matches = {}, 0
    for colour, shape in PROMPTS:
        found = Counter()
        for seed in range(seeds):
            image = pipe(f"a {colour} {shape} on a white background", height=64, width=64, num_inference_steps=steps,
                         guidance_scale=cfg, generator=torch.manual_seed(seed), output_type="np").images[0]
            result = dominant_colour(image, foreground(image))
            found[result] += 1
            matches += result == colour
            if save:
                os.makedirs(save, exist_ok=True)
                from PIL import Image
                Image.fromarray((image * 255).round().astype(np.uint8)).save(os.path.join(save, f"{colour}-{seed}.png"))
        confusion[colour] = dict(found)
    return matches / (len(PROMPTS) * seeds), confusion


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--cfg", type=float, nargs="+", default=[7.5])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--save", help="folder for the generated images")
    args = parser.parse_args()
    torch.set_num_threads(2)
    pipe = load(args.model)
    for cfg in args.cfg:
        rate, confusion = evaluate(pipe, cfg, args.steps, args.seeds, args.save)
        print(f"cfg {cfg}: {rate:.0%} match  {confusion}", flush=True)


if __name__ == "__main__":
    main()
