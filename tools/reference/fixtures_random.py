"""torch.randn golden values for sdflow's TorchGenerator (Tests/Fixtures/randn.safetensors).

Each case draws one or more tensors from one torch.Generator().manual_seed(seed), in order.
"""
import torch

from common import fixture_path, save

CASES = {
    "seed0_latent64": (0, [[1, 4, 64, 64]]),
    "seed42_batch": (42, [[2, 4, 8, 8]]),
    "seed1234567_tail": (1234567, [[1, 4, 9, 7]]),
    "seed_big": (2 ** 32 + 5, [[17]]),
    "seed7_small": (7, [[5]]),
    "seed9_sequence": (9, [[7], [20], [3], [1, 4, 4, 4], [1]]),
    "seed31337_scalar": (31337, [[]]),
}


def make():
    out = {}
    for name, (seed, shapes) in CASES.items():
        g = torch.Generator().manual_seed(seed)
        for i, shape in enumerate(shapes):
            out[f"{name}.{i}"] = torch.randn(shape, generator=g)
    save(out, fixture_path("randn.safetensors"), metadata={k: str(v[0]) for k, v in CASES.items()})


if __name__ == "__main__":
    make()
