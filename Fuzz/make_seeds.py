#!/usr/bin/env python3
"""Writes the committed seed inputs of the fuzz harnesses that the test fixtures do not already
provide (Python standard library only). scripts/fuzz.sh adds the fixtures themselves (PNG and JPEG
images, safetensors files, bundled workflows). Rerun with no arguments from the repository root.

    Fuzz/corpus/checkpoint/   safetensors headers: the tiny model as a single LDM file, and parts
    Fuzz/corpus/safetensors/  small hand-made files: every dtype, metadata, empty and odd headers
    Fuzz/corpus/plugin/       plugin pack descriptions in the harness's byte encoding

Fuzz/corpus/rerun/ holds PNGs written by save_image, made with sdflow itself, e.g.
    sdflow run workflows/txt2img.yaml --set steps=2 --set seed=random --set output=Fuzz/corpus/rerun/txt2img.png
(likewise workflows/inpaint.yaml, and an 8x8 resize_image of examples/mask.png).
"""

import json
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "Fuzz" / "corpus"
FIXTURES = ROOT / "Tests" / "Fixtures"
DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1, "F64": 8}


def header_of(path):
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length])


def layout(entries, metadata=None):
    """A header dict from {name: (dtype, shape)} with consecutive data offsets."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape) in entries.items():
        size = DTYPE_SIZES[dtype]
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    return header, offset


def safetensors_file(entries, metadata=None, fill=0):
    header, size = layout(entries, metadata)
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + bytes([fill]) * size


def checkpoint_seeds():
    """The tiny model's tensors under their single-file (LDM) names, as the header the harness takes."""
    keymap = json.loads((FIXTURES / "ldm-keymap.json").read_text())["tiny"]
    files = {"unet": "unet/diffusion_pytorch_model.safetensors", "vae": "vae/diffusion_pytorch_model.fp16.safetensors",
             "text_encoder": "text_encoder/model.safetensors"}
    prefixes = {"unet": "model.diffusion_model.", "vae": "first_stage_model.", "text_encoder": "cond_stage_model.transformer."}
    entries = {}
    for component, mapping in sorted(keymap.items()):
        header = header_of(FIXTURES / "tiny-sd" / files[component])
        for ldm, diffusers in sorted(mapping.items()):
            info = header[diffusers]
            shape = list(info["shape"])
            if component == "vae" and ".mid.attn_1." in ldm and ldm.endswith("weight") and len(shape) == 2:
                shape += [1, 1]
            entries[prefixes[component] + ldm] = (info["dtype"], shape)
    entries["cond_stage_model.transformer.text_model.embeddings.position_ids"] = ("I64", [1, 77])
    full, _ = layout(entries)
    yield "tiny-single-file", full
    for component, prefix in prefixes.items():
        part, _ = layout({k: v for k, v in entries.items() if k.startswith(prefix)})
        yield "tiny-" + component, part


def plugin_string(text):
    if text is None:
        return bytes([255])
    data = text.encode()
    return bytes([len(data)]) + data


def plugin_array(items):
    return bytes([len(items)]) + b"".join(items)


# A struct_size byte before each described struct: 0 gives the right size (6: zero, 7: too small).
SIZE_OK = bytes([0])


def plugin_port(name, type_code, optional=0):
    return SIZE_OK + plugin_string(name) + bytes([type_code, optional]) + plugin_string("help")


def plugin_parameter(name, kind, minimum, maximum, choices=None, default=None):
    return (SIZE_OK + plugin_string(name) + bytes([kind]) + struct.pack(">dd", minimum, maximum)
            + plugin_string(choices) + plugin_string(default) + plugin_string("help"))


def plugin_node(name, inputs, outputs, parameters, flags=0):
    return (SIZE_OK + plugin_string(name) + plugin_string("summary") + struct.pack(">i", 1)
            + plugin_array(inputs) + plugin_array(outputs) + plugin_array(parameters) + bytes([flags]))


def plugin_seeds():
    parameters = [
        plugin_parameter("count", 1, 1, 100, default="4"),
        plugin_parameter("amount", 2, 0.0, 1.0, default="0.5"),
        plugin_parameter("label", 3, 1, 0, default="text"),
        plugin_parameter("flag", 4, 1, 0, default="true"),
        plugin_parameter("mode", 5, 1, 0, choices="fast, exact", default="exact"),
        plugin_parameter("seed", 6, 1, 0, default="42"),
        plugin_parameter("source", 7, 1, 0),
        plugin_parameter("folder", 8, 1, 0),
        plugin_parameter("either", 9, 1, 0),
        plugin_parameter("target", 10, 1, 0, default="out.png"),
    ]
    invert = plugin_node("invert_colors", [plugin_port("image", 1)], [plugin_port("image", 1)], parameters[:2])
    mix = plugin_node("mix", [plugin_port("a", 5), plugin_port("b", 5, 1)], [plugin_port("tensor", 5)], parameters)
    sink = plugin_node("write_text", [plugin_port("text", 7)], [], parameters[2:], flags=1)
    pack = bytes([0]) + SIZE_OK + plugin_string("fuzz_pack") + plugin_string("1.0")
    yield "one-node", pack + plugin_array([invert])
    yield "three-nodes", pack + plugin_array([invert, mix, sink])
    yield "no-nodes", pack + plugin_array([])
    yield "old-abi", bytes([1]) + struct.pack(">i", 1) + SIZE_OK + plugin_string("old") + plugin_string(None) + plugin_array([])


def main():
    for name, header in checkpoint_seeds():
        out = CORPUS / "checkpoint" / (name + ".json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(header, separators=(",", ":")))

    safetensors = {
        "every-dtype": safetensors_file({f"t_{d.lower()}": (d, [2, 3]) for d in DTYPE_SIZES}, fill=0x3C),
        "metadata": safetensors_file({"w": ("F32", [4])}, {"format": "pt", "note": "seed"}),
        "empty-header": safetensors_file({}),
        "scalar-and-empty": safetensors_file({"s": ("F16", []), "e": ("F32", [0, 5])}),
        "big-shape": safetensors_file({"w": ("BF16", [16, 16])}, fill=0x7F),
    }
    for name, data in safetensors.items():
        out = CORPUS / "safetensors" / (name + ".safetensors")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)

    for name, data in plugin_seeds():
        out = CORPUS / "plugin" / (name + ".bin")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)


if __name__ == "__main__":
    main()
