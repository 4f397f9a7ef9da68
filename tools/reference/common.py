"""Shared helpers for the reference scripts."""
import os

import torch
from safetensors.torch import save_file

HERE_REFERENCE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")

# The fixtures are computed on one thread so that they do not depend on the machine.
torch.set_num_threads(1)


def fixture_path(*parts):
    path = os.path.join(FIXTURES, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def save(tensors, path, metadata=None):
    """Writes float32 contiguous tensors to a safetensors file and reports its size."""
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(tensors, path, metadata=metadata)
    print(f"wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path) / 1024:.0f} KiB, {len(tensors)} tensors)")
