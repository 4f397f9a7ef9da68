"""Golden inputs and outputs for every TensorCore op, computed with PyTorch on the CPU in float32.

Writes Tests/Fixtures/ops.safetensors. Each case is a group of tensors named `<case>.<role>`.
"""
import math

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding

from common import fixture_path, save


def make():
    g = torch.Generator().manual_seed(1234)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float32)

    t = {}

    def case(name, **tensors):
        for role, value in tensors.items():
            t[f"{name}.{role}"] = value.clone().contiguous()

    # Matrix products
    x, w, b = randn(2, 5, 12), randn(7, 12), randn(7)
    case("linear", input=x, weight=w, bias=b, output=F.linear(x, w, b))
    a, m = randn(3, 4, 6), randn(6, 5)
    case("matmul", input=a, other=m, output=a @ m)
    a, m = randn(3, 4, 6), randn(3, 6, 5)
    case("bmm", input=a, other=m, output=torch.bmm(a, m))
    a, m = randn(3, 4, 6), randn(3, 5, 6)
    case("bmm_t", input=a, other=m, output=torch.bmm(a, m.transpose(1, 2)))

    # Convolutions
    x, w, b = randn(2, 6, 9, 7), randn(5, 6, 3, 3), randn(5)
    case("conv3x3", input=x, weight=w, bias=b, output=F.conv2d(x, w, b, stride=1, padding=1))
    case("conv3x3_s2", input=x, weight=w, bias=b, output=F.conv2d(x, w, b, stride=2, padding=1))
    # The VAE encoder's downsample: pad right and bottom by one, then stride 2 without padding.
    case("conv3x3_s2_asym", input=x, weight=w, bias=b, output=F.conv2d(F.pad(x, (0, 1, 0, 1)), w, b, stride=2))
    w1 = randn(5, 6, 1, 1)
    case("conv1x1", input=x, weight=w1, bias=b, output=F.conv2d(x, w1, b))
    xl, wl, bl = randn(1, 16, 40, 33), randn(24, 16, 3, 3), randn(24)
    case("conv3x3_large", input=xl, weight=wl, bias=bl, output=F.conv2d(xl, wl, bl, padding=1))

    # Normalisation
    x, gw, gb = randn(2, 8, 5, 6), randn(8), randn(8)
    x = x * 3 + 5  # an offset mean exercises the two-pass variance
    y = F.group_norm(x, 4, gw, gb, eps=1e-6)
    case("groupnorm", input=x, weight=gw, bias=gb, output=y, output_silu=F.silu(y))
    x, lw, lb = randn(2, 5, 12), randn(12), randn(12)
    case("layernorm", input=x, weight=lw, bias=lb, output=F.layer_norm(x, (12,), lw, lb, eps=1e-5))

    # Softmax and attention
    x = randn(3, 7, 11) * 4
    case("softmax", input=x, output=torch.softmax(x, dim=-1))
    q, k, v = randn(2, 6, 16), randn(2, 9, 16), randn(2, 9, 12)
    case("attention", query=q, key=k, value=v, output=multi_head(q, k, v, heads=4, causal=False))
    q, k, v = randn(2, 260, 32), randn(2, 256, 32), randn(2, 256, 16)
    case("attention_large", query=q, key=k, value=v, output=multi_head(q, k, v, heads=4, causal=False))
    s = randn(2, 7, 16)
    case("attention_causal", query=s, output=multi_head(s, s, s, heads=2, causal=True))

    # Activations
    x = randn(4, 33) * 3
    case("activations", input=x, silu=F.silu(x), gelu=F.gelu(x), quick_gelu=x * torch.sigmoid(1.702 * x))
    x = randn(2, 3, 10) * 2
    hidden, gate = x.chunk(2, dim=-1)
    case("geglu", input=x, output=hidden * F.gelu(gate))

    # Shape and resampling
    x = randn(2, 3, 4, 5)
    case("upsample", input=x, output=F.interpolate(x, scale_factor=2.0, mode="nearest"))
    x2 = randn(2, 5, 4, 5)
    case("concat", first=x, second=x2, output=torch.cat([x, x2], dim=1))
    c = randn(3, 1, 1)
    r = randn(1, 3, 1, 1)
    case("broadcast", input=x, channel=c, row=r, add=x + c, mul=x * r)
    x = randn(2, 3, 6, 8)
    case("avgpool", input=x, output=F.avg_pool2d(x, kernel_size=2, stride=2))
    x = randn(2, 6, 20)
    case("transpose", input=x, output=x.transpose(1, 2))

    # Timestep embedding as SD's UNet uses it
    steps = torch.tensor([0.0, 1.0, 261.0, 500.0, 999.0])
    for dim in (32, 320):
        case(f"timestep{dim}", timesteps=steps,
             output=get_timestep_embedding(steps, dim, flip_sin_to_cos=True, downscale_freq_shift=0))

    save(t, fixture_path("ops.safetensors"))


def multi_head(q, k, v, heads, causal):
    """Reference multi-head attention through torch's scaled_dot_product_attention."""
    b, tq, c = q.shape
    s, cv = k.shape[1], v.shape[2]

    def split(x, width):
        return x.view(b, -1, heads, width // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q, c), split(k, c), split(v, cv), is_causal=causal)
    return out.transpose(1, 2).reshape(b, tq, cv)




def make_dtypes():
    """F16 and BF16 tensors as torch writes them, with their exact float32 values."""
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(99)
    x = torch.randn(3, 17, generator=g) * 100
    special = torch.tensor([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1e-5, 5.96e-8, 1e-7, float("inf"), -float("inf")])
    tensors = {
        "f16": x.half(), "f16_special": special.half(), "bf16": x.bfloat16(),
        "f16_as_f32": x.half().float(), "f16_special_as_f32": special.half().float(),
        "bf16_as_f32": x.bfloat16().float(), "i64": torch.arange(5, dtype=torch.int64),
    }
    path = fixture_path("dtypes.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"format": "pt", "note": "sdflow dtype fixture"})
    print(f"wrote {path}")


if __name__ == "__main__":
    make()
    make_dtypes()
