"""Textual-inversion fixtures on the tiny model: embeddings in the three .safetensors layouts sdflow
reads, a pickled file it reads with its restricted unpickler, and the conditioning diffusers computes with them
(StableDiffusionPipeline.load_textual_inversion, then encode_prompt). Run after
fixtures_models.py (it loads Tests/Fixtures/tiny-sd).

Tests/Fixtures/embeddings/ (the file name is the embedding's name, as in A1111 and ComfyUI):
  wobbly-style.safetensors  A1111's safetensors layout: {"emb_params": (2, 16)}, two vectors
  oldstyle.safetensors      A1111's older layout: {"string_to_param.*": (1, 16)}
  learnedcat.safetensors    diffusers' learned_embeds: {"learnedcat": (16,)}, one vector as a 1-D tensor
  pickled.pt                a torch.save'd A1111 dict, read by sdflow's restricted unpickler
Vectors: torch.manual_seed(2024), normal with std 0.5.

Tests/Fixtures/embeddings-reference.safetensors (float32):
  cond.{i}   (1, 77, 16) last_hidden_state for PROMPTS[i] (metadata "prompts": JSON list), the
             embedding names written bare as A1111 prompts use them; diffusers is given each file
             with token=<file name>, so multi-vector names expand to as many vectors.
  cond.weighted  WEIGHTED_PROMPT's conditioning with A1111 weighting done by hand on cond.0's
             recipe: "(wobbly-style:1.3)" - both vectors weigh 1.3 - then the chunk's mean restored.

    ~/.venvs/sdflow-ref/bin/python fixtures_embeddings.py     (from tools/reference/)
"""
import json

import torch
from safetensors.torch import save_file

from common import fixture_path, save
from fixtures_lora import pipeline
from fixtures_pipelines import components

PROMPTS = [
    "a photo of wobbly-style, in the snow",
    "oldstyle portrait of a cat",
    "learnedcat and wobbly-style together, oldstyle",
]
WEIGHTED_PROMPT = "(wobbly-style:1.3) castle"


def make():
    torch.manual_seed(2024)
    width = 16
    files = {
        "wobbly-style": {"emb_params": torch.randn(2, width) * 0.5},
        "oldstyle": {"string_to_param.*": torch.randn(1, width) * 0.5},
        "learnedcat": {"learnedcat": torch.randn(width) * 0.5},
    }
    for name, tensors in files.items():
        save_file({k: v.contiguous() for k, v in tensors.items()}, fixture_path("embeddings", name + ".safetensors"))
    torch.save({"string_to_param": {"*": torch.randn(1, width)}, "name": "pickled"}, fixture_path("embeddings", "pickled.pt"))

    unet, vae, clip = components()
    pipe = pipeline(unet, vae, clip)
    for name in files:
        pipe.load_textual_inversion(fixture_path("embeddings", name + ".safetensors"), token=name)
    ref = {}
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            ref[f"cond.{i}"] = pipe.encode_prompt(prompt, torch.device("cpu"), 1, False)[0]
        # A1111 weighting over the plain conditioning: ids of "wobbly-style castle" are
        # BOS, two vectors (weight 1.3), "castle", EOS...; z * w, then the original mean restored.
        z = pipe.encode_prompt("wobbly-style castle", torch.device("cpu"), 1, False)[0]
        w = torch.ones(77)
        w[1:3] = 1.3
        original = z.mean()
        weighted = z * w[None, :, None]
        ref["cond.weighted"] = weighted * (original / weighted.mean())
    save(ref, fixture_path("embeddings-reference.safetensors"),
         metadata={"prompts": json.dumps(PROMPTS), "weighted_prompt": WEIGHTED_PROMPT})


if __name__ == "__main__":
    make()
