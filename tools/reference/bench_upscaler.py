"""Upscaler speed, PyTorch side: a random-weight model of Real-ESRGAN x4plus's exact size (RRDBNet,
23 blocks, 64 features, 32 growth channels) and of realesr-general-x4v3's (SRVGGNetCompact, 32
convolutions, 64 features), saved as .pth the way they are released, and spandrel's time to run each
on one image on the CPU. sdflow's side is `sdflow run` of tools/reference/upscale-bench.yaml on the
same files (see docs/big-images.md, "Measurements").

    python bench_upscaler.py OUT_DIR [--size 128] [--threads 2]

Writes OUT_DIR/realesrgan-x4plus.pth, OUT_DIR/realesr-general-x4v3.pth, OUT_DIR/input-SIZE.png and
OUT_DIR/torch-<model>.png (spandrel's outputs, to compare with sdflow's), and prints each model's
best time of 3 runs as JSON.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image
from spandrel import ModelLoader
from spandrel.architectures.ESRGAN import ESRGAN
from spandrel.architectures.Compact import Compact


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)
    models = {
        "realesrgan-x4plus": ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4),
        "realesr-general-x4v3": Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4),
    }
    rng = np.random.default_rng(0)
    image = (rng.random((args.size, args.size, 3)) * 255).astype(np.uint8)
    input_path = os.path.join(args.out, f"input-{args.size}.png")
    Image.fromarray(image).save(input_path)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    rows = []
    for name, network in models.items():
        with torch.no_grad():  # small random weights keep the activations in range
            for p in network.parameters():
                p.mul_(0.5)
        path = os.path.join(args.out, name + ".pth")
        torch.save({"params_ema": network.state_dict()}, path)
        model = ModelLoader().load_from_file(path).eval()
        best = float("inf")
        with torch.inference_mode():
            for _ in range(3):
                start = time.perf_counter()
                y = model(x)
                best = min(best, time.perf_counter() - start)
        out = (y[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(out).save(os.path.join(args.out, f"torch-{name}.png"))
        rows.append({"model": name, "seconds": best, "input": args.size, "threads": args.threads, "torch": torch.__version__})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
