"""Upscaler (ESRGAN / Real-ESRGAN RRDBNet and Real-ESRGAN Compact) fixtures, with spandrel 0.4.2 (the
loader ComfyUI uses) as the reference: tiny random-weight models saved the ways users have them, and
what spandrel makes of them on one small odd-sized image. See docs/notes-upscalers-draft.md for the
architectures.

Growth channels: spandrel 0.4.2 builds every RRDB with gc=32 whatever the file holds (RRDBNet passes
gc=32 literally and load_state_dict is strict), so an RRDBNet with other growth channels does not load
in spandrel. Real models all have 32; with 32 no RRDB fixture could be small (the convs of one RRDB
alone hold ~170k weights), so these have num_grow_ch 4 and are loaded with spandrel under grow_channels(4)
below, which changes only the gc spandrel passes to its RRDB blocks (detection, key conversion, scale
and the wrapper are spandrel's own). A reader must take gc from the weights (body.0.rdb1.conv1.weight's
out channels). make() also checks that unpatched spandrel refuses these files and that, at gc=32,
spandrel and the functional reference below agree.

Tests/Fixtures/upscalers/ (weights: conv weights normal * sqrt(1/fan_in), biases normal * 0.05, PReLU
slopes uniform in [0, 0.5]; RRDBNet's last conv rescaled so that on the fixture image its output has
mean 0.5 and std 0.25, Compact's last conv weights halved: a few percent of the outputs fall outside
[0, 1], so the clamp matters):
  esrgan-x4-new.pth      RRDBNet, BasicSR/Real-ESRGAN key names (conv_first, body.N.rdbK.convJ, conv_body,
                         conv_up1, conv_up2, conv_hr, conv_last), scale 4, num_feat 8, num_block 2, gc 4;
                         torch.save zip of {"params_ema": state dict} as Real-ESRGAN releases are.
  esrgan-x2-new.pth      the same names, scale 2 the Real-ESRGAN way: pixel_unshuffle(2) first, so conv_first
                         takes 12 channels, and still two x2 upconvs; num_block 1; zip, plain state dict.
  esrgan-x1-new.pth      scale 1: pixel_unshuffle(4), conv_first takes 48 channels, two x2 upconvs; num_block 1;
                         zip, {"params": state dict}.
  esrgan-x4-old.pth      the original ESRGAN ("old arch") names: model.0, model.1.sub.N.RDBK.convJ.0,
                         model.1.sub.<num_block>, model.3, model.6, model.8, model.10; scale 4, num_block 2;
                         saved in torch's legacy (pre-1.6) format, as the original ESRGAN releases are.
  esrgan-x4-bsrgan.pth   the BSRGAN / older-ESRGAN-repo names (conv_first, RRDB_trunk.N.RDBK.convJ, trunk_conv,
                         upconv1, upconv2, HRconv, conv_last); scale 4, num_block 1; zip, plain state dict.
  compact-x4.pth         SRVGGNetCompact (realesr-general-x4v3 style: body.0 conv, body.1 PReLU, ...,
                         body.6 conv to 3*4*4), num_feat 8, num_conv 2, scale 4; zip, {"params": ...} as
                         realesr-general-x4v3.pth is.
  compact-x2.safetensors the same at scale 2 (body.6 has 3*2*2 = 12 out channels).
  unknown-arch.safetensors SwinIR-flavoured keys (conv_first.weight, layers.0.residual_group.blocks.0.norm1.weight,
                         ..., conv_last.weight; no relative_position_index): no architecture must match;
                         spandrel raises UnsupportedModelError. conv_first/conv_last are there on purpose.
  expected.safetensors   per model stem: "<stem>.input" (1,3,13,17) float32 in [0,1) (the same image for all),
                         "<stem>.output" = spandrel's ImageModelDescriptor(input): padded to its size
                         requirements, clamped to [0,1], cropped to (13*scale, 17*scale);
                         "<stem>.raw" = descriptor.model(input): the network alone, not clamped (for the
                         pixel-unshuffle models the network itself reflect-pads to a multiple of the unshuffle
                         factor, then crops). __metadata__: per stem the architecture, scale, and what spandrel
                         reported (JSON).
"""
import contextlib
import json
import math
import os
from collections import OrderedDict

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import spandrel
from spandrel import ModelLoader, UnsupportedModelError
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN
import spandrel.architectures.__arch_helpers.block as spandrel_block

from common import REPO, fixture_path

IMAGE_SIZE = (13, 17)
NUM_FEAT = 8
GROW = 4

_ORIGINAL_RRDB = spandrel_block.RRDB


@contextlib.contextmanager
def grow_channels(gc):
    """Makes spandrel's RRDBNet build its RRDB blocks with growth channels gc instead of its fixed 32."""
    def rrdb(*args, **kwargs):
        kwargs["gc"] = gc
        return _ORIGINAL_RRDB(*args, **kwargs)

    spandrel_block.RRDB = rrdb
    try:
        yield
    finally:
        spandrel_block.RRDB = _ORIGINAL_RRDB


# ----------------------------------------------------------------------------------------------
# Weights


def randomize(model, g, last_gain):
    """Kaiming-like random weights; the model's last conv scaled by last_gain and its bias set near 0.5
    for RRDBNet (whose output is the last conv) or 0 for Compact (whose output adds the input)."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(1.0 / fan_in))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)
        convs[-1].weight.mul_(last_gain)


def old_to_new(sd, style):
    """spandrel's (old ESRGAN) RRDBNet names -> BasicSR ("basicsr") or BSRGAN ("bsrgan") names."""
    names = {
        "basicsr": dict(first="conv_first", body="body", rdb="rdb", trunk="conv_body", up="conv_up",
                        hr="conv_hr", last="conv_last"),
        "bsrgan": dict(first="conv_first", body="RRDB_trunk", rdb="RDB", trunk="trunk_conv", up="upconv",
                       hr="HRconv", last="conv_last"),
    }[style]
    num_blocks = max(int(k.split(".")[3]) for k in sd if k.startswith("model.1.sub.") and ".RDB" in k) + 1
    top = sorted({int(k.split(".")[1]) for k in sd})
    last = top[-1]
    ups = [i for i in top if i not in (0, 1, last - 2, last)]
    assert ups == [3 * (k + 1) for k in range(len(ups))], ups
    new = OrderedDict()
    for k, v in sd.items():
        p = k.split(".")
        kind = p[-1]
        i = int(p[1])
        if i == 0:
            new[f"{names['first']}.{kind}"] = v
        elif i == 1 and p[3] == str(num_blocks):
            new[f"{names['trunk']}.{kind}"] = v
        elif i == 1:  # model.1.sub.N.RDBk.convj.0.kind
            n, rdb, conv = p[3], p[4][3:], p[5]
            new[f"{names['body']}.{n}.{names['rdb']}{rdb}.{conv}.{kind}"] = v
        elif i in ups:
            new[f"{names['up']}{i // 3}.{kind}"] = v
        elif i == last - 2:
            new[f"{names['hr']}.{kind}"] = v
        elif i == last:
            new[f"{names['last']}.{kind}"] = v
        else:
            raise AssertionError(k)
    assert len(new) == len(sd)
    return new


# ----------------------------------------------------------------------------------------------
# Functional references (BasicSR / Real-ESRGAN's forward, written from the papers' code structure)


def _conv(sd, name, x):
    return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)


def rrdbnet_reference(sd, x):
    """RRDBNet on BasicSR names. Infers everything from the weights, as a reader must."""
    lrelu = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
    in_nc = sd["conv_first.weight"].shape[1]
    out_nc = sd["conv_last.weight"].shape[0]
    shuffle = int(math.isqrt(in_nc // out_nc)) if in_nc in (4 * out_nc, 16 * out_nc) else 1
    h, w = x.shape[2:]
    if shuffle > 1:
        x = F.pad(x, (0, (-w) % shuffle, 0, (-h) % shuffle), mode="reflect")
        x = F.pixel_unshuffle(x, shuffle)
    num_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("body."))
    ups = sorted(int(k[len("conv_up"):].split(".")[0]) for k in sd if k.startswith("conv_up") and k.endswith("weight"))
    fea = _conv(sd, "conv_first", x)
    t = fea
    for n in range(num_blocks):
        block_in = t
        for r in (1, 2, 3):
            feats = [t]
            for j in (1, 2, 3, 4):
                feats.append(lrelu(_conv(sd, f"body.{n}.rdb{r}.conv{j}", torch.cat(feats, 1))))
            t = _conv(sd, f"body.{n}.rdb{r}.conv5", torch.cat(feats, 1)) * 0.2 + t
        t = t * 0.2 + block_in
    fea = fea + _conv(sd, "conv_body", t)
    for k in ups:
        fea = lrelu(_conv(sd, f"conv_up{k}", F.interpolate(fea, scale_factor=2, mode="nearest")))
    out = _conv(sd, "conv_last", lrelu(_conv(sd, "conv_hr", fea)))
    scale = 2 ** len(ups) // shuffle
    return out[:, :, : h * scale, : w * scale]


def compact_reference(sd, x):
    last = max(int(k.split(".")[1]) for k in sd)
    out = x
    for i in range(0, last, 2):
        out = _conv(sd, f"body.{i}", out)
        out = F.prelu(out, sd[f"body.{i + 1}.weight"])
    out = _conv(sd, f"body.{last}", out)
    scale = math.isqrt(out.shape[1] // x.shape[1])
    return F.pixel_shuffle(out, scale) + F.interpolate(x, scale_factor=scale, mode="nearest")


def wrapper_reference(fn, x, scale, multiple_of, minimum):
    """spandrel's ImageModelDescriptor.__call__: pad right/bottom (reflect, at most size-1, then replicate)
    up to max(minimum, size) rounded up to multiple_of, run, clamp to [0,1], crop to size*scale."""
    h, w = x.shape[2:]
    minimum = -(-minimum // multiple_of) * multiple_of
    th = -(-max(minimum, h) // multiple_of) * multiple_of
    tw = -(-max(minimum, w) // multiple_of) * multiple_of
    ph, pw = th - h, tw - w
    if ph or pw:
        rh, rw = min(ph, h - 1), min(pw, w - 1)
        x = F.pad(x, (0, rw, 0, rh), mode="reflect")
        x = F.pad(x, (0, pw - rw, 0, ph - rh), mode="replicate")
    return fn(x).clamp(0, 1)[:, :, : h * scale, : w * scale]


# ----------------------------------------------------------------------------------------------


def build_models(g, image):
    """[(stem, container, state dict as saved, spandrel-layout state dict, kind, scale, gc)]"""
    models = []

    def rrdb(in_nc, scale, shuffle, num_blocks, gc=GROW):
        with grow_channels(gc):
            m = ESRGAN(in_nc=in_nc, out_nc=3, num_filters=NUM_FEAT, num_blocks=num_blocks, scale=scale,
                       shuffle_factor=shuffle)
        randomize(m, g, last_gain=1.0)
        with torch.no_grad():  # the last conv rescaled so that on the image the output has mean 0.5, std 0.25
            last = m.model[-1]
            k = 0.25 / m(image).std()
            last.weight.mul_(k)
            last.bias.mul_(k)
            last.bias.add_(0.5 - m(image).mean())
        return OrderedDict((k, v.detach().clone()) for k, v in m.state_dict().items())

    x4 = rrdb(3, 4, None, 2)
    models.append(("esrgan-x4-new", "zip:params_ema", old_to_new(x4, "basicsr"), x4, "ESRGAN", 4))
    x2 = rrdb(12, 4, 2, 1)
    models.append(("esrgan-x2-new", "zip", old_to_new(x2, "basicsr"), x2, "ESRGAN", 2))
    x1 = rrdb(48, 4, 4, 1)
    models.append(("esrgan-x1-new", "zip:params", old_to_new(x1, "basicsr"), x1, "ESRGAN", 1))
    old = rrdb(3, 4, None, 2)
    models.append(("esrgan-x4-old", "legacy", old, old, "ESRGAN", 4))
    bsr = rrdb(3, 4, None, 1)
    models.append(("esrgan-x4-bsrgan", "zip", old_to_new(bsr, "bsrgan"), bsr, "ESRGAN", 4))
    for scale, container in ((4, "zip:params"), (2, "safetensors")):
        m = Compact(num_in_ch=3, num_out_ch=3, num_feat=NUM_FEAT, num_conv=2, upscale=scale, act_type="prelu")
        randomize(m, g, last_gain=0.5)
        sd = OrderedDict((k, v.detach().clone()) for k, v in m.state_dict().items())
        models.append((f"compact-x{scale}", container, sd, sd, "Compact", scale))
    return models


def save_model(stem, container, sd):
    if container == "safetensors":
        path = fixture_path("upscalers", f"{stem}.safetensors")
        save_file(dict(sd), path)
        return path
    path = fixture_path("upscalers", f"{stem}.pth")
    obj = {"zip": sd, "legacy": sd, "zip:params_ema": {"params_ema": sd}, "zip:params": {"params": sd}}[container]
    torch.save(obj, path, _use_new_zipfile_serialization=(container != "legacy"))
    return path


def check_gc32_agrees(g, image):
    """Unpatched spandrel on a gc=32 model (in memory) against the functional reference."""
    m = ESRGAN(in_nc=3, out_nc=3, num_filters=NUM_FEAT, num_blocks=1, scale=4)
    randomize(m, g, last_gain=0.3)
    sd = OrderedDict((k, v.detach().clone()) for k, v in m.state_dict().items())
    desc = ModelLoader().load_from_state_dict(old_to_new(sd, "basicsr"))
    with torch.no_grad():
        diff = (desc.model(image) - rrdbnet_reference(old_to_new(sd, "basicsr"), image)).abs().max().item()
    assert diff < 1e-5, diff
    print(f"gc=32, unpatched spandrel vs functional reference: max |diff| {diff:.2e}")


def make():
    g = torch.Generator().manual_seed(4242)
    image = torch.rand(1, 3, *IMAGE_SIZE, generator=g)
    expected, meta = {}, {}
    for stem, container, saved, spandrel_sd, kind, scale in build_models(g, image):
        path = save_model(stem, container, saved)
        if kind == "ESRGAN":
            try:
                ModelLoader().load_from_file(path)
            except RuntimeError as e:
                assert "size mismatch" in str(e)
            else:
                raise AssertionError("unpatched spandrel loaded a gc=4 RRDBNet")
        with grow_channels(GROW):
            desc = ModelLoader().load_from_file(path)
        assert desc.architecture.id == kind, desc.architecture.id
        assert desc.scale == scale and desc.input_channels == 3 and desc.output_channels == 3, (desc.scale,)
        loaded = desc.model.state_dict()
        assert loaded.keys() == spandrel_sd.keys() and all(torch.equal(loaded[k], spandrel_sd[k]) for k in loaded)
        with torch.no_grad():
            raw = desc.model(image.clone())
            output = desc(image.clone())
        req = desc.size_requirements
        # The functional references, on the names as saved (BasicSR names for every RRDBNet).
        ref_sd = saved if kind == "Compact" else old_to_new(spandrel_sd, "basicsr")
        fn = (lambda t: compact_reference(ref_sd, t)) if kind == "Compact" else (lambda t: rrdbnet_reference(ref_sd, t))
        with torch.no_grad():
            d_raw = (fn(image) - raw).abs().max().item()
            d_out = (wrapper_reference(fn, image, scale, req.multiple_of, req.minimum) - output).abs().max().item()
        assert d_raw < 1e-5 and d_out < 1e-5, (stem, d_raw, d_out)
        outside = ((raw < 0) | (raw > 1)).float().mean().item()
        assert output.shape[2:] == (IMAGE_SIZE[0] * scale, IMAGE_SIZE[1] * scale)
        expected[f"{stem}.input"] = image.clone()
        expected[f"{stem}.output"] = output
        expected[f"{stem}.raw"] = raw
        meta[stem] = dict(file=os.path.basename(path), architecture=desc.architecture.id, scale=desc.scale,
                          input_channels=desc.input_channels, output_channels=desc.output_channels,
                          tags=desc.tags, purpose=desc.purpose, size_requirements=dict(
                              minimum=req.minimum, multiple_of=req.multiple_of, square=req.square),
                          hyperparameters={k: v for k, v in desc.model.hyperparameters.items()
                                           if isinstance(v, (int, str, bool, type(None)))},
                          raw_outside_0_1=round(outside, 4))
        print(f"{stem}: {desc.architecture.id} x{desc.scale} tags {desc.tags} size_req "
              f"(min {req.minimum}, multiple {req.multiple_of}); raw outside [0,1]: {outside:.1%}; "
              f"vs functional reference {max(d_raw, d_out):.1e}; {os.path.getsize(path)} bytes")

    check_gc32_agrees(g, image)

    # An architecture sdflow does not know (and spandrel does not detect).
    unknown = {
        "conv_first.weight": torch.randn(8, 3, 3, 3, generator=g), "conv_first.bias": torch.zeros(8),
        "patch_embed.norm.weight": torch.ones(8), "patch_embed.norm.bias": torch.zeros(8),
        "layers.0.residual_group.blocks.0.norm1.weight": torch.ones(8),
        "layers.0.residual_group.blocks.0.norm1.bias": torch.zeros(8),
        "layers.0.residual_group.blocks.0.attn.qkv.weight": torch.randn(24, 8, generator=g),
        "layers.0.residual_group.blocks.0.attn.proj.weight": torch.randn(8, 8, generator=g),
        "layers.0.residual_group.blocks.0.mlp.fc1.weight": torch.randn(16, 8, generator=g),
        "layers.0.residual_group.blocks.0.mlp.fc1.bias": torch.zeros(16),
        "conv_after_body.weight": torch.randn(8, 8, 3, 3, generator=g),
        "conv_last.weight": torch.randn(3, 8, 3, 3, generator=g), "conv_last.bias": torch.zeros(3),
    }
    unknown_path = fixture_path("upscalers", "unknown-arch.safetensors")
    save_file(unknown, unknown_path)
    try:
        ModelLoader().load_from_file(unknown_path)
    except UnsupportedModelError:
        print("unknown-arch.safetensors: spandrel raises UnsupportedModelError")
    else:
        raise AssertionError("spandrel detected unknown-arch.safetensors")

    exp_path = fixture_path("upscalers", "expected.safetensors")
    save_file({k: v.detach().float().contiguous() for k, v in expected.items()}, exp_path,
              metadata={"models": json.dumps(meta), "spandrel": spandrel.__version__, "torch": torch.__version__})
    assert load_file(exp_path).keys() == expected.keys()
    folder = os.path.dirname(exp_path)
    total = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
    print(f"wrote {os.path.relpath(folder, REPO)}: {len(os.listdir(folder))} files, {total / 1024:.0f} KiB")


if __name__ == "__main__":
    make()
