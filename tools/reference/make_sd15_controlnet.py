"""A random-weight ControlNet of the exact SD 1.5 architecture (361M parameters), for the opt-in
full-size checks and the benchmark, next to make_sd15_model.py's model:

    python3 tools/reference/make_sd15_controlnet.py OUT_DIR
    SDFLOW_SD15=OUT_DIR swift test -c release --filter FullSize
    sdflow bench model OUT_DIR/diffusers-f32 --controlnet OUT_DIR/control_sd15_random.safetensors

Writes OUT_DIR/control_sd15_random.safetensors (A1111's layout: LDM names under control_model.,
float16), OUT_DIR/controlnet-f32/ (a diffusers folder) and OUT_DIR/controlnet-reference.safetensors:
the residuals of one call on 32x32 latents (a 256x256 control image), batch 2, scale 0.9.
"""
import os
import sys

import torch
from diffusers import ControlNetModel
from safetensors.torch import save_file

import tiny_models as tm
from fixtures_controlnet import controlnet_ldm_names


def main(out):
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    config = {k: v for k, v in tm.SD15_UNET.items() if k not in ("sample_size", "out_channels", "up_block_types")}
    config["conditioning_embedding_out_channels"] = (16, 32, 96, 256)
    net = tm.randomize(ControlNetModel(**config), torch.Generator().manual_seed(1717), half=torch.float16)
    print("ControlNet parameters:", sum(p.numel() for p in net.parameters()), flush=True)
    net.save_pretrained(os.path.join(out, "controlnet-f32"), safe_serialization=True)
    names = controlnet_ldm_names(config)
    state = {"control_model." + tm.rename(k, names): v.to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    save_file(state, os.path.join(out, "control_sd15_random.safetensors"))
    g = torch.Generator().manual_seed(1818)
    ref = {"sample": torch.randn(2, 4, 32, 32, generator=g), "timesteps": torch.tensor([981.0, 1.0]),
           "context": torch.randn(2, 77, 768, generator=g), "hint": torch.rand(2, 3, 256, 256, generator=g)}
    with torch.no_grad():
        down, mid = net(ref["sample"], ref["timesteps"], encoder_hidden_states=ref["context"], controlnet_cond=ref["hint"],
                        conditioning_scale=0.9, return_dict=False)
    for i, d in enumerate(down):
        ref[f"down.{i}"] = d
    ref["mid"] = mid
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(out, "controlnet-reference.safetensors"))
    print("wrote control_sd15_random.safetensors, controlnet-f32/, controlnet-reference.safetensors", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
