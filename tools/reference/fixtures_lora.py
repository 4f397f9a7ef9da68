"""LoRA fixtures on the tiny model: one random rank-4 LoRA written in every layout sdflow reads,
two files it must refuse, and reference outputs computed by diffusers (and checked by hand).
Run after fixtures_models.py (it loads Tests/Fixtures/tiny-sd).

The LoRA (torch.manual_seed(1515); lora_down/lora_A and lora_up/lora_B both normal with std 0.2,
rounded to float16 precision so every file stores exactly the same values) covers
  UNet:          to_q, to_k, to_v, to_out.0 of attn1 and attn2, ff.net.0.proj, ff.net.2 of every
                 transformer block, and proj_in, proj_out (1x1 convolutions in SD 1.x) of every
                 Transformer2DModel; plus LoCon convolutions (lora_down (r, in, kh, kw), lora_up
                 (out, r, 1, 1)) on the UNET_CONVS listed below: 3x3 resnet convs, a 1x1
                 conv_shortcut, a stride-2 downsampler and two upsampler convs;
  text encoder:  self_attn.q_proj, k_proj, v_proj, out_proj, mlp.fc1, mlp.fc2 of every layer.
Every layout gives W' = W + strength * (alpha / rank) * (up.flatten(1) @ down.flatten(1)).reshape(W.shape)
with rank 4 and alpha 2 (scale 0.5), except where noted.

Tests/Fixtures/lora/ (file names and key naming):
  kohya.safetensors      A1111/kohya, float16: lora_unet_<diffusers module path, . -> _>.lora_down.weight,
                         .lora_up.weight, .alpha (0-d tensor, 2.0); text encoder
                         lora_te_text_model_encoder_layers_<N>_self_attn_q_proj.lora_down.weight ...,
                         lora_te_text_model_encoder_layers_<N>_mlp_fc1 ...
  kohya-ldm.safetensors  the same with LDM UNet module paths (lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q,
                         lora_unet_input_blocks_1_0_in_layers_2, lora_unet_output_blocks_2_1_conv ...), found
                         through Tests/Fixtures/ldm-keymap.json; text encoder as kohya.safetensors. diffusers
                         0.42 reads it only with load_lora_weights(file, unet_config=...) and then mis-maps
                         output_blocks.2.1.conv (the upsampler after a level without attention), so the reference
                         for it is the kohya.safetensors one (same LoRA), not what diffusers makes of it.
  peft.safetensors       written by diffusers' StableDiffusionPipeline.save_lora_weights from peft-injected
                         models (tensors cast to float16): unet.<module>.lora_A.weight / .lora_B.weight and
                         text_encoder.text_model.encoder.layers.<N>.self_attn.q_proj.lora_A.weight; no
                         per-module alpha: __metadata__["lora_adapter_metadata"] is the JSON of both
                         LoraConfigs, flattened with component prefixes ("unet.r": 4, "unet.lora_alpha": 2, ...,
                         "text_encoder.r": 4, ...), exactly as diffusers writes and reads it.
  peft-no-text-model.safetensors  the same, text encoder keys without `text_model.`
                         (text_encoder.encoder.layers.<N>...; what transformers 5 models save).
  peft-no-alpha.safetensors  peft.safetensors' tensors without lora_adapter_metadata: alpha = rank, scale 1
                         (its own reference case, txt2img.peft-no-alpha.1.0).
  old-diffusers.safetensors  the old attention-processor format, UNet attention projections only, float32:
                         unet.<block>.transformer_blocks.0.attn1.processor.to_q_lora.down.weight / .up.weight
                         (to_out_lora for to_out.0); no alpha, scale 1. Its up weights are the LoRA's lora_up
                         times 0.5, so each of its layers patches exactly as in kohya.safetensors (the
                         patched.unet.*to_q* reference holds for it too), but it lacks every other module:
                         its own reference case, txt2img.old-diffusers.1.0.
  loha.safetensors       LyCORIS LoHa (hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b, alpha) on two UNet
                         attention layers and one text-encoder layer: to be refused by name.
  sdxl.safetensors       SDXL-style kohya keys with SDXL shapes (lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q
                         640x640, lora_te1_text_model_..._q_proj 768, lora_te2_text_model_..._q_proj 1280): to be refused.

Tests/Fixtures/lora-reference.safetensors (float32):
  patched.unet.<param>, patched.text_encoder.<param>   hand-patched weights at strength 1.0 (PATCHED below)
  cond.none, cond.<s>                 last_hidden_state (1, 77, 16) of PROMPT without / with the LoRA at strength s
  txt2img.latents                     starting latents (1, 4, 16, 16), torch.randn with seed 77
  txt2img.none, txt2img.<s>           final latents (output_type="latent") of a 4-step Euler txt2img, 64x64,
                                      guidance 7.5, negative prompt "", without / with kohya.safetensors at strength s
  cond.peft-no-alpha.1.0, txt2img.peft-no-alpha.1.0    peft-no-alpha.safetensors at strength 1
  txt2img.old-diffusers.1.0           old-diffusers.safetensors at strength 1
for s in 1.0, 0.5. diffusers applies strength by pipe.load_lora_weights(file) then
pipe.fuse_lora(lora_scale=s), which this script checks equals the hand patching above.
"""
import json
import os
import shutil

import torch
from diffusers import StableDiffusionPipeline
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from common import REPO, fixture_path, save
from fixtures_pipelines import PROMPT, components, scheduler
from make_sd15_model import tokenizer

RANK, ALPHA = 4, 2.0
SCALE = ALPHA / RANK
STRENGTHS = (1.0, 0.5)
STEPS, GUIDANCE, NEGATIVE, SIZE = 4, 7.5, "", 64
SEED = 1515

UNET_LINEAR = (".to_q", ".to_k", ".to_v", ".to_out.0", ".ff.net.0.proj", ".ff.net.2", ".proj_in", ".proj_out")
UNET_CONVS = [
    "down_blocks.0.resnets.0.conv1",          # 3x3, 16 -> 16      (LDM input_blocks.1.0.in_layers.2)
    "down_blocks.0.downsamplers.0.conv",      # 3x3 stride 2       (input_blocks.3.0.op)
    "down_blocks.1.resnets.0.conv_shortcut",  # 1x1, 16 -> 32      (input_blocks.4.0.skip_connection)
    "mid_block.resnets.0.conv2",              # 3x3, 32 -> 32      (middle_block.0.out_layers.3)
    "up_blocks.0.upsamplers.0.conv",          # 3x3 after a plain level (output_blocks.2.1.conv)
    "up_blocks.1.upsamplers.0.conv",          # 3x3 after an attention level (output_blocks.5.2.conv)
    "up_blocks.2.resnets.0.conv1",            # 3x3, 48 -> 16      (output_blocks.6.0.in_layers.2)
]
TEXT_LINEAR = (".self_attn.q_proj", ".self_attn.k_proj", ".self_attn.v_proj", ".self_attn.out_proj", ".mlp.fc1", ".mlp.fc2")
# Weights stored patched at strength 1.0 (diffusers module paths; text encoder with `text_model.`).
PATCHED = {
    "unet": ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "down_blocks.0.resnets.0.conv1",
             "down_blocks.1.resnets.0.conv_shortcut"],
    "text_encoder": ["encoder.layers.0.self_attn.q_proj"],
}
ATTENTION = (".to_q", ".to_k", ".to_v", ".to_out.0")


def canonical_metadata(path):
    """Rewrites a safetensors header with its __metadata__ keys sorted (safetensors writes them in
    hash-map order), so that the fixtures come out byte for byte the same on every run."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data[8 + n:])


def failure(e):
    """An exception as a short deterministic message (diffusers prints module sets in hash order)."""
    message = str(e).split("{")[0].strip()
    return f"refused: {type(e).__name__}: {message[:160]}"


def te_name(module):
    """Text-encoder module path as SD 1.x files have it (transformers 5 models lack `text_model.`)."""
    return module if module.startswith("text_model.") else "text_model." + module


# MARK: - The LoRA

def target_modules(unet, clip):
    unet_names = [n for n, _ in unet.named_modules() if ".attentions." in n and n.endswith(UNET_LINEAR)]
    unet_names += UNET_CONVS
    text_names = [n for n, _ in clip.named_modules() if n.endswith(TEXT_LINEAR)]
    return {"unet": unet_names, "text_encoder": text_names}


def make_lora(unet, clip):
    """{(component, module): (down, up)}, float32 values exact in float16."""
    torch.manual_seed(SEED)
    lora = {}
    for component, model in (("unet", unet), ("text_encoder", clip)):
        for name in target_modules(unet, clip)[component]:
            m = model.get_submodule(name)
            if isinstance(m, torch.nn.Linear):
                down_shape, up_shape = (RANK, m.in_features), (m.out_features, RANK)
            elif isinstance(m, torch.nn.Conv2d):
                down_shape, up_shape = (RANK, m.in_channels, *m.kernel_size), (m.out_channels, RANK, 1, 1)
            else:
                raise TypeError(f"{name}: {type(m)}")
            down = (torch.randn(down_shape) * 0.2).half().float()
            up = (torch.randn(up_shape) * 0.2).half().float()
            lora[(component, name)] = (down, up)
    return lora


def delta(down, up, shape):
    return (up.flatten(1) @ down.flatten(1)).reshape(shape)


def hand_patched(model, lora, component, strength, scale=SCALE, only=None):
    """The model's state dict with W + strength * scale * up @ down on every LoRA module."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for (c, name), (down, up) in lora.items():
        if c != component or (only is not None and not only(name)):
            continue
        w = sd[name + ".weight"]
        sd[name + ".weight"] = w + strength * scale * delta(down, up, w.shape)
    return sd


# MARK: - Layouts

def ldm_module_names():
    with open(fixture_path("ldm-keymap.json")) as f:
        unet_map = json.load(f)["tiny"]["unet"]
    return {d.removesuffix(".weight"): l.removesuffix(".weight") for l, d in unet_map.items() if d.endswith(".weight")}


def kohya_dict(lora, ldm=False):
    names = ldm_module_names() if ldm else None
    out = {}
    for (component, name), (down, up) in lora.items():
        if component == "unet":
            key = "lora_unet_" + (names[name] if ldm else name).replace(".", "_")
        else:
            key = "lora_te_" + te_name(name).replace(".", "_")
        out[f"{key}.lora_down.weight"] = down.half()
        out[f"{key}.lora_up.weight"] = up.half()
        out[f"{key}.alpha"] = torch.tensor(ALPHA, dtype=torch.float16)
    return out


def write_peft(lora, folder):
    """peft.safetensors and peft-no-text-model.safetensors through diffusers' save_lora_weights from
    peft-injected models (LoraConfig r=4, lora_alpha=2)."""
    from diffusers.training_utils import _collate_lora_metadata
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    unet, _, clip = components()
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2",
                                                "proj_in", "proj_out", *UNET_CONVS]))
    clip.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, init_lora_weights=False,
                                target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]))
    injected = set()
    with torch.no_grad():
        for component, model in (("unet", unet), ("text_encoder", clip)):
            for name, m in model.named_modules():
                if hasattr(m, "lora_A") and "default" in m.lora_A:
                    down, up = lora[(component, name)]
                    m.lora_A["default"].weight.copy_(down)
                    m.lora_B["default"].weight.copy_(up)
                    injected.add((component, name))
    assert injected == set(lora), f"peft targeted other modules: {injected ^ set(lora)}"
    # Stored as float16 (the values are exact in it) to keep the fixtures small.
    unet_layers = {k: v.half() for k, v in get_peft_model_state_dict(unet).items()}
    text_layers = {k: v.half() for k, v in get_peft_model_state_dict(clip).items()}
    metadata = _collate_lora_metadata({"unet": unet, "text_encoder": clip})
    for config in metadata.values():  # reproducible bytes: no local path, no set order
        config["base_model_name_or_path"] = None
        config["target_modules"] = sorted(config["target_modules"])
    for weight_name, te in (("peft.safetensors", te_name), ("peft-no-text-model.safetensors", lambda k: k)):
        StableDiffusionPipeline.save_lora_weights(
            folder, unet_lora_layers=unet_layers, text_encoder_lora_layers={te(k): v for k, v in text_layers.items()},
            weight_name=weight_name, **metadata)


def old_diffusers_dict(lora):
    out = {}
    for (component, name), (down, up) in lora.items():
        if component != "unet" or not name.endswith(ATTENTION):
            continue
        block, proj = name.rsplit(".", 1) if not name.endswith(".to_out.0") else (name[:-len(".to_out.0")], "to_out")
        key = f"unet.{block}.processor.{proj}_lora"
        out[f"{key}.down.weight"] = down
        out[f"{key}.up.weight"] = up * SCALE  # exact: scale 1 in this format, same patched weights
    return out


def loha_dict(lora):
    g = torch.Generator().manual_seed(SEED + 1)
    out = {}
    for component, name in (("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"),
                            ("unet", "up_blocks.2.attentions.2.transformer_blocks.0.attn2.to_k"),
                            ("text_encoder", "encoder.layers.0.self_attn.q_proj")):
        down, up = lora[(component, name)]
        key = ("lora_unet_" + name if component == "unet" else "lora_te_" + te_name(name)).replace(".", "_")
        n_in, n_out = down.shape[1], up.shape[0]
        for w in ("w1", "w2"):
            out[f"{key}.hada_{w}_a"] = (torch.randn(n_out, RANK, generator=g) * 0.2).half()
            out[f"{key}.hada_{w}_b"] = (torch.randn(RANK, n_in, generator=g) * 0.2).half()
        out[f"{key}.alpha"] = torch.tensor(ALPHA, dtype=torch.float16)
    return out


def sdxl_dict():
    g = torch.Generator().manual_seed(SEED + 2)
    out = {}
    for key, n_in, n_out in (("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", 640, 640),
                             ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
                             ("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 1280, 1280)):
        out[f"{key}.lora_down.weight"] = (torch.randn(RANK, n_in, generator=g) * 0.2).half()
        out[f"{key}.lora_up.weight"] = (torch.randn(n_out, RANK, generator=g) * 0.2).half()
        out[f"{key}.alpha"] = torch.tensor(ALPHA, dtype=torch.float16)
    return out


# MARK: - Running diffusers

def pipeline(unet, vae, clip):
    return StableDiffusionPipeline(vae=vae, text_encoder=clip, tokenizer=tokenizer(), unet=unet,
                                   scheduler=scheduler("euler"), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def outputs(pipe, latents):
    with torch.no_grad():
        cond = pipe.encode_prompt(PROMPT, torch.device("cpu"), 1, False)[0]
        out = pipe(PROMPT, negative_prompt=NEGATIVE, height=SIZE, width=SIZE, num_inference_steps=STEPS,
                   guidance_scale=GUIDANCE, latents=latents.clone(), output_type="latent").images
    return cond, out


def plain_state(model):
    """A peft-injected model's weights under their plain names (fused LoRA included)."""
    return {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if ".lora_" not in k}


def with_diffusers(path, strength, latents, **kwargs):
    """Loads `path` with pipe.load_lora_weights and fuses it at `strength`; returns (cond, latents, unet
    weights, text-encoder weights)."""
    unet, vae, clip = components()
    pipe = pipeline(unet, vae, clip)
    pipe.load_lora_weights(path, **kwargs)
    pipe.fuse_lora(lora_scale=strength)
    cond, out = outputs(pipe, latents)
    return cond, out, plain_state(unet), plain_state(clip)


def with_hand_patch(lora, strength, latents, scale=SCALE, only=None):
    unet, vae, clip = components()
    unet_sd = hand_patched(unet, lora, "unet", strength, scale, only)
    clip_sd = hand_patched(clip, lora, "text_encoder", strength, scale, only)
    unet.load_state_dict(unet_sd)
    clip.load_state_dict(clip_sd)
    cond, out = outputs(pipeline(unet, vae, clip), latents)
    return cond, out, unet_sd, clip_sd


def max_diff(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b), f"key sets differ: {sorted(set(a) ^ set(b))[:5]}"
        return max(max_diff(a[k], b[k]) for k in a)
    return (a.float() - b.float()).abs().max().item()


def make():
    torch.set_num_threads(1)
    folder = fixture_path("lora", "x")[:-2]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    path = lambda name: os.path.join(folder, name)

    unet, vae, clip = components()
    lora = make_lora(unet, clip)
    targets = target_modules(unet, clip)
    print(f"LoRA: {len(targets['unet'])} UNet modules ({len(UNET_CONVS)} LoCon convolutions), "
          f"{len(targets['text_encoder'])} text-encoder modules")

    # The files.
    save_file(kohya_dict(lora), path("kohya.safetensors"), metadata={"ss_network_dim": str(RANK), "ss_network_alpha": str(ALPHA)})
    save_file(kohya_dict(lora, ldm=True), path("kohya-ldm.safetensors"), metadata={"ss_network_dim": str(RANK), "ss_network_alpha": str(ALPHA)})
    write_peft(lora, folder)
    peft_tensors = load_file(path("peft.safetensors"))
    save_file(peft_tensors, path("peft-no-alpha.safetensors"), metadata={"format": "pt"})
    save_file(old_diffusers_dict(lora), path("old-diffusers.safetensors"), metadata={"format": "pt"})
    save_file(loha_dict(lora), path("loha.safetensors"))
    save_file(sdxl_dict(), path("sdxl.safetensors"))
    for name in sorted(os.listdir(folder)):
        canonical_metadata(path(name))
        print(f"wrote {os.path.relpath(path(name), REPO)} ({os.path.getsize(path(name)) / 1024:.1f} KiB)")
    with safe_open(path("peft.safetensors"), "pt") as f:
        stored = json.loads(f.metadata()["lora_adapter_metadata"])
    assert stored["unet.r"] == RANK and stored["unet.lora_alpha"] == ALPHA and stored["text_encoder.lora_alpha"] == ALPHA

    # The reference.
    g = torch.Generator().manual_seed(77)
    latents = torch.randn(1, 4, SIZE // 4, SIZE // 4, generator=g)
    ref = {"txt2img.latents": latents}
    diffs = {}
    sd_unet = hand_patched(unet, lora, "unet", 1.0)
    sd_clip = hand_patched(clip, lora, "text_encoder", 1.0)
    for name in PATCHED["unet"]:
        ref[f"patched.unet.{name}.weight"] = sd_unet[name + ".weight"]
    for name in PATCHED["text_encoder"]:
        ref[f"patched.text_encoder.{te_name(name)}.weight"] = sd_clip[name + ".weight"]

    ref["cond.none"], ref["txt2img.none"] = outputs(pipeline(*components()), latents)

    def check(label, got, want, tol=1e-4):
        d = [max_diff(g, w) for g, w in zip(got, want)]
        diffs[label] = d
        print(f"{label:58s} cond {d[0]:.2e}  latents {d[1]:.2e}  unet weights {d[2]:.2e}  text weights {d[3]:.2e}")
        assert max(d) < tol, f"{label}: {d}"

    # Same LoRA by construction (kohya-ldm.safetensors included, whatever diffusers makes of it).
    equivalent = ["kohya.safetensors", "kohya-ldm.safetensors", "peft.safetensors", "peft-no-text-model.safetensors"]
    accepted = {}
    try:
        with_diffusers(path("kohya-ldm.safetensors"), 1.0, latents)
        accepted["kohya-ldm.safetensors (no unet_config)"] = "loaded"
    except Exception as e:  # noqa: BLE001
        accepted["kohya-ldm.safetensors (no unet_config)"] = failure(e)
    for s in STRENGTHS:
        hand = with_hand_patch(lora, s, latents)
        kohya = with_diffusers(path("kohya.safetensors"), s, latents)
        ref[f"cond.{s}"], ref[f"txt2img.{s}"] = kohya[0], kohya[1]
        check(f"diffusers kohya.safetensors vs hand patch, s={s}", kohya, hand)
        for name in ("peft.safetensors", "peft-no-text-model.safetensors"):
            check(f"diffusers {name} vs kohya.safetensors, s={s}", with_diffusers(path(name), s, latents), kohya, 1e-6)
        # kohya-ldm: diffusers maps LDM ("sgm") block names only when given the UNet config.
        try:
            ldm = with_diffusers(path("kohya-ldm.safetensors"), s, latents, unet_config=unet.config)
        except Exception as e:  # noqa: BLE001 - report what diffusers does with the file
            accepted["kohya-ldm.safetensors"] = failure(e)
            print(f"diffusers kohya-ldm.safetensors s={s}: {accepted['kohya-ldm.safetensors']}")
            continue
        wrong = sorted(k for k in hand[2] if max_diff(ldm[2][k], hand[2][k]) > 1e-6)
        if not wrong:
            check(f"diffusers kohya-ldm.safetensors vs kohya.safetensors, s={s}", ldm, kohya, 1e-6)
            accepted["kohya-ldm.safetensors"] = "loaded with load_lora_weights(file, unet_config=pipe.unet.config)"
        else:
            rest = max(max_diff(ldm[2][k], hand[2][k]) for k in hand[2] if k not in wrong)
            d = [max_diff(ldm[0], kohya[0]), max_diff(ldm[1], kohya[1]), rest, max_diff(ldm[3], kohya[3])]
            diffs[f"diffusers kohya-ldm.safetensors vs kohya.safetensors, s={s}, except {wrong}"] = d
            print(f"diffusers kohya-ldm.safetensors s={s}: wrong weights {wrong}; cond {d[0]:.2e}, latents {d[1]:.2e} "
                  f"(not comparable), other unet weights {d[2]:.2e}, text weights {d[3]:.2e}")
            assert d[0] == 0 and rest == 0 and d[3] == 0
            untouched = all(torch.equal(ldm[2][k], unet.state_dict()[k]) for k in wrong)
            accepted["kohya-ldm.safetensors"] = (
                "loaded only with load_lora_weights(file, unet_config=pipe.unet.config) (without it: "
                f"{accepted.get('kohya-ldm.safetensors (no unet_config)')}); diffusers' sgm block mapping "
                f"mis-maps {wrong} (output_blocks.2.1.conv -> up_blocks.0.attentions.2.conv, dropped with an "
                f"'unexpected keys' warning{', weight left unpatched' if untouched else ''}); every other weight "
                "matches kohya.safetensors exactly")

    # peft without alpha: scale 1.
    no_alpha = with_diffusers(path("peft-no-alpha.safetensors"), 1.0, latents)
    check("diffusers peft-no-alpha.safetensors vs hand patch (scale 1)", no_alpha,
          with_hand_patch(lora, 1.0, latents, scale=1.0))
    ref["cond.peft-no-alpha.1.0"], ref["txt2img.peft-no-alpha.1.0"] = no_alpha[0], no_alpha[1]

    # Old attention-processor format: UNet attention projections only.
    attention_only = lambda name: name.endswith(ATTENTION)
    hand_old = with_hand_patch({k: v for k, v in lora.items() if k[0] == "unet"}, 1.0, latents, only=attention_only)
    try:
        old = with_diffusers(path("old-diffusers.safetensors"), 1.0, latents)
        check("diffusers old-diffusers.safetensors vs hand patch", old, hand_old)
        accepted["old-diffusers.safetensors"] = "loaded by load_lora_weights"
        ref["txt2img.old-diffusers.1.0"] = old[1]
    except Exception as e:  # noqa: BLE001
        accepted["old-diffusers.safetensors"] = failure(e) + "; reference by hand"
        print(f"diffusers old-diffusers.safetensors: {accepted['old-diffusers.safetensors']}")
        ref["txt2img.old-diffusers.1.0"] = hand_old[1]
    assert max_diff(hand_old[2][PATCHED["unet"][0] + ".weight"], ref[f"patched.unet.{PATCHED['unet'][0]}.weight"]) == 0

    for name in ("loha.safetensors", "sdxl.safetensors"):
        try:
            with_diffusers(path(name), 1.0, latents)
            accepted[name] = "loaded by load_lora_weights"
        except Exception as e:  # noqa: BLE001
            accepted[name] = failure(e)
        print(f"diffusers {name}: {accepted[name]}")

    for key in ("cond.1.0", "cond.0.5", "txt2img.1.0", "txt2img.0.5"):
        none = ref[key.split(".")[0] + ".none"]
        effect = max_diff(ref[key], none)
        print(f"LoRA effect on {key}: max |with - without| {effect:.3g} (max |without| {none.abs().max().item():.3g})")
        assert effect > 0.1
    meta = {
        "prompt": PROMPT, "negative_prompt": NEGATIVE, "steps": str(STEPS), "guidance": str(GUIDANCE),
        "size": f"{SIZE}x{SIZE}", "scheduler": "EulerDiscreteScheduler",
        "scheduler_config": json.dumps({k: v for k, v in scheduler("euler").config.items() if not k.startswith("_")},
                                       sort_keys=True),
        "strengths": json.dumps(list(STRENGTHS)), "rank": str(RANK), "alpha": str(ALPHA),
        "strength_applied_by": "pipe.load_lora_weights(file); pipe.fuse_lora(lora_scale=s)",
        "patched_formula": "W + s * (alpha / rank) * (up.flatten(1) @ down.flatten(1)).reshape(W.shape), s = 1.0",
        "equivalent": json.dumps({"cond.<s>, txt2img.<s>, patched.*": equivalent,
                                  "cond.peft-no-alpha.1.0, txt2img.peft-no-alpha.1.0": ["peft-no-alpha.safetensors"],
                                  "txt2img.old-diffusers.1.0, patched.unet.*.to_q.weight": ["old-diffusers.safetensors"]}),
        "diffusers": json.dumps(accepted),
        "max_abs_diffs": json.dumps(diffs),
    }
    save(ref, fixture_path("lora-reference.safetensors"), metadata=meta)
    canonical_metadata(fixture_path("lora-reference.safetensors"))
    print(json.dumps(accepted, indent=1))


if __name__ == "__main__":
    make()
