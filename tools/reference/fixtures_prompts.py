"""Prompt-weighting fixtures: how a prompt's attention syntax is parsed, cut into CLIP chunks and
applied to the text encoder's output, for the three weighting styles sdflow offers ("a1111",
"comfy", "none"). Run after fixtures_models.py (it loads Tests/Fixtures/tiny-sd/text_encoder).

The reference is a re-implementation here (neither program is imported) of
  AUTOMATIC1111  modules/prompt_parser.py  parse_prompt_attention (re_attention, re_break),
                 modules/sd_hijack_clip.py  tokenize_line (75-token chunks, comma_padding_backtrack
                                            20, BREAK) and process_tokens, and
                 modules/sd_emphasis.py     EmphasisOriginal (weights, then the chunk's mean restored);
  ComfyUI        comfy/sd1_clip.py          escape_important, parse_parentheses, token_weights,
                                            unescape_important, and encode_token_weights (weights
                                            pull each token away from the empty prompt's encoding).
Tokens come from transformers' CLIPTokenizer over sdflow's bundled vocabulary
(make_sd15_model.tokenizer()), each parsed segment tokenized on its own without special tokens.
Every style is cut into chunks by A1111's rule, as sdflow does; ComfyUI itself tokenizes word by
word (split at spaces) and breaks chunks at word boundaries without the comma backtrack, which is
not reproduced here.

Tests/Fixtures/prompts.json
  "a1111_parse": [{"prompt": str, "parsed": [[text, weight], ...]}, ...]
      parse_prompt_attention(prompt); BREAK is ["BREAK", -1] (its weight is multiplied like any
      other piece's by brackets around it, as in A1111); runs of equal weights merged.
      One entry may also carry "note": str, where A1111 itself fails (see A1111_FALLBACK below).
  "comfy_parse": [{"prompt": str, "parsed": [[text, weight], ...]}, ...]
      [(unescape_important(t), w) for t, w in token_weights(escape_important(prompt), 1.0)],
      not merged (the empty prompt gives []). Same prompt list.
  "chunks": [{"prompt": str, "style": "a1111"|"comfy"|"none", "ids": [[77 ints], ...],
              "weights": [[77 floats], ...]}, ...]
      A1111's tokenize_line over the style's segments: "a1111" its parser (BREAK starts a new
      chunk), "comfy" ComfyUI's parser (BREAK is plain text), "none" the whole prompt as one
      segment of weight 1. Every prompt of CHUNK_PROMPTS for every style, prompt-major.

Tests/Fixtures/prompts.safetensors (float32), for entry i of "chunks" in order:
  cond.{i}        (1, 77 * chunks, 16) the weighted conditioning, clip skip 1 (last_hidden_state)
  cond.{i}.skip2  the same with clip skip 2 (final_layer_norm(hidden_states[-2]))
  Each chunk is encoded alone as (1, 77) ids, then weighted:
    a1111: orig = z.mean(); z = z * w[..., None] (w float32); z = z * (orig / z.mean())
    comfy: if any weight of the prompt != 1: z_empty = encoding of [49406] + [49407] * 76 (same clip
           skip), and z[j] = (z[j] - z_empty[j]) * w[j] + z_empty[j] where w[j] != 1 (no mean restore)
    none:  z unchanged
  and the chunks are concatenated along the token axis. The metadata key "index" holds the JSON
  list [{"key", "prompt", "style", "clip_skip"}, ...].

    ~/.venvs/sdflow-ref/bin/python fixtures_prompts.py     (from tools/reference/)
"""
import json
import re

import torch
from transformers import CLIPTextModel

from common import fixture_path, save
from make_sd15_model import tokenizer

# ---------------------------------------------------------------- A1111 parse_prompt_attention

RE_ATTENTION = re.compile(r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""", re.X)

RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)

# A1111 calls float(weight) on the "[.\d]+" match, which raises ValueError for "1.2.3" and the
# like (the generation fails). The fixture needs a result, so there the whole match (":1.2.3)")
# is kept as plain text instead, and the round bracket stays open.
A1111_FALLBACK = "A1111 raises ValueError (float of the weight); parsed keeps the ':w)' match as plain text"


def parse_a1111(text, notes=None):
    res = []
    round_brackets = []
    square_brackets = []
    round_bracket_multiplier = 1.1
    square_bracket_multiplier = 1 / 1.1

    def multiply_range(start_position, multiplier):
        for p in range(start_position, len(res)):
            res[p][1] *= multiplier

    def plain(piece):
        parts = re.split(RE_BREAK, piece)
        for i, part in enumerate(parts):
            if i > 0:
                res.append(["BREAK", -1])
            res.append([part, 1.0])

    for m in RE_ATTENTION.finditer(text):
        piece = m.group(0)
        weight = m.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece == "(":
            round_brackets.append(len(res))
        elif piece == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            try:
                w = float(weight)
            except ValueError:
                if notes is not None:
                    notes.append(A1111_FALLBACK)
                plain(piece)
                continue
            multiply_range(round_brackets.pop(), w)
        elif piece == ")" and round_brackets:
            multiply_range(round_brackets.pop(), round_bracket_multiplier)
        elif piece == "]" and square_brackets:
            multiply_range(square_brackets.pop(), square_bracket_multiplier)
        else:
            plain(piece)

    for pos in round_brackets:
        multiply_range(pos, round_bracket_multiplier)
    for pos in square_brackets:
        multiply_range(pos, square_bracket_multiplier)

    if len(res) == 0:
        res = [["", 1.0]]

    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return res


# ---------------------------------------------------------------- ComfyUI token_weights

def parse_parentheses(string):
    result = []
    current_item = ""
    nesting_level = 0
    for char in string:
        if char == "(":
            if nesting_level == 0:
                if current_item:
                    result.append(current_item)
                current_item = "("
            else:
                current_item += char
            nesting_level += 1
        elif char == ")":
            nesting_level -= 1
            if nesting_level == 0:
                result.append(current_item + ")")
                current_item = ""
            else:
                current_item += char
        else:
            current_item += char
    if current_item:
        result.append(current_item)
    return result


def token_weights(string, current_weight):
    out = []
    for x in parse_parentheses(string):
        weight = current_weight
        if len(x) >= 2 and x[-1] == ")" and x[0] == "(":
            x = x[1:-1]
            xx = x.rfind(":")
            weight *= 1.1
            if xx > 0:
                try:
                    weight = float(x[xx + 1:])
                    x = x[:xx]
                except ValueError:
                    pass
            out += token_weights(x, weight)
        else:
            out += [(x, current_weight)]
    return out


def escape_important(text):
    return text.replace("\\)", "\0\1").replace("\\(", "\0\2")


def unescape_important(text):
    return text.replace("\0\1", ")").replace("\0\2", "(")


def parse_comfy(text):
    return [[unescape_important(t), w] for t, w in token_weights(escape_important(text), 1.0)]


# ---------------------------------------------------------------- A1111 tokenize_line

CHUNK_LENGTH = 75
COMMA_PADDING_BACKTRACK = 20
BOS, EOS = 49406, 49407


def segments(prompt, style):
    if style == "a1111":
        return parse_a1111(prompt)
    if style == "comfy":
        return parse_comfy(prompt)
    return [[prompt, 1.0]]


def tokenize_line(tok, comma_token, prompt, style):
    """A1111's tokenize_line (no textual-inversion embeddings): (ids, weights) per 77-token chunk."""
    parsed = segments(prompt, style)
    tokenized = tok([text for text, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"] if parsed else []

    chunks = []
    chunk = {"tokens": [], "multipliers": []}
    last_comma = -1

    def next_chunk(is_last=False):
        nonlocal last_comma, chunk
        to_add = CHUNK_LENGTH - len(chunk["tokens"])
        if to_add > 0:
            chunk["tokens"] += [EOS] * to_add
            chunk["multipliers"] += [1.0] * to_add
        chunk["tokens"] = [BOS] + chunk["tokens"] + [EOS]
        chunk["multipliers"] = [1.0] + chunk["multipliers"] + [1.0]
        last_comma = -1
        chunks.append(chunk)
        chunk = {"tokens": [], "multipliers": []}

    for tokens, (text, weight) in zip(tokenized, parsed):
        # Only A1111's parser makes BREAK markers; for the other styles the word is plain text.
        if style == "a1111" and text == "BREAK" and weight == -1:
            next_chunk()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma_token:
                last_comma = len(chunk["tokens"])
            elif (COMMA_PADDING_BACKTRACK != 0 and len(chunk["tokens"]) == CHUNK_LENGTH and last_comma != -1
                  and len(chunk["tokens"]) - last_comma <= COMMA_PADDING_BACKTRACK):
                break_location = last_comma + 1
                reloc_tokens = chunk["tokens"][break_location:]
                reloc_mults = chunk["multipliers"][break_location:]
                chunk["tokens"] = chunk["tokens"][:break_location]
                chunk["multipliers"] = chunk["multipliers"][:break_location]
                next_chunk()
                chunk["tokens"] = reloc_tokens
                chunk["multipliers"] = reloc_mults
            if len(chunk["tokens"]) == CHUNK_LENGTH:
                next_chunk()
            chunk["tokens"].append(token)
            chunk["multipliers"].append(weight)
            position += 1

    if chunk["tokens"] or not chunks:
        next_chunk(is_last=True)
    return [c["tokens"] for c in chunks], [c["multipliers"] for c in chunks]


# ---------------------------------------------------------------- conditioning

def encode(clip, ids, clip_skip):
    out = clip(torch.tensor([ids]), output_hidden_states=True)
    if clip_skip > 1:  # A1111's transformer.text_model.final_layer_norm (flattened in transformers 5)
        return clip.final_layer_norm(out.hidden_states[-clip_skip])
    return out.last_hidden_state


def conditioning(clip, ids, weights, style, clip_skip):
    zs = []
    has_weights = any(w != 1.0 for chunk in weights for w in chunk)
    z_empty = encode(clip, [BOS] + [EOS] * 76, clip_skip)[0] if style == "comfy" and has_weights else None
    for chunk_ids, chunk_weights in zip(ids, weights):
        z = encode(clip, chunk_ids, clip_skip)
        if style == "a1111":  # sd_emphasis.EmphasisOriginal
            multipliers = torch.asarray([chunk_weights])  # python floats -> float32, as A1111
            original_mean = z.mean()
            z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
            new_mean = z.mean()
            z = z * (original_mean / new_mean)
        elif style == "comfy" and has_weights:  # ClipTokenWeightEncoder.encode_token_weights
            z = z.clone()
            for j, weight in enumerate(chunk_weights):
                if weight != 1.0:
                    z[0][j] = (z[0][j] - z_empty[j]) * weight + z_empty[j]
        zs.append(z)
    return torch.cat(zs, dim=-2)


# ---------------------------------------------------------------- prompts

PARSE_PROMPTS = [
    # A1111's doctest cases
    "normal text",
    "an (important) word",
    "(unbalanced",
    "\\(literal\\]",
    "(unnecessary)(parens)",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    # more
    "((x:1.3))",
    "[[faint]] (a:0.5) b",
    "one BREAK two",
    "x (y:-0.5) z",
    "a:b (c:1.2.3)",
    "emoji (\U0001F431:1.2)",
    "\\\\ backslash",
    "((masterpiece:1.2)), best quality, [blurry]",
    # A1111 multiplies a BREAK marker's -1 inside brackets, and it is then no longer a BREAK
    "(a BREAK b)",
    "",
    "a ( b : 1.5 ) c",
    "x:1.2) y]",
]

A1111_DOCTESTS = {
    "normal text": [["normal text", 1.0]],
    "an (important) word": [["an ", 1.0], ["important", 1.1], [" word", 1.0]],
    "(unbalanced": [["unbalanced", 1.1]],
    "\\(literal\\]": [["(literal]", 1.0]],
    "(unnecessary)(parens)": [["unnecessaryparens", 1.1]],
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).": [
        ["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
        [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]],
}

# 100 tokens; its last comma before the 75-token limit is token 59, so A1111 moves the 15 tokens after it
# to the second chunk.
COMMA_PROMPT = ("masterpiece, best quality, a detailed oil painting of an old lighthouse on a rocky cliff above "
                "a stormy sea, dramatic clouds, crashing waves, seagulls in the wind, warm light in the windows, "
                "dusk, moody atmosphere, cinematic lighting, intricate brushwork, rich textures, muted colors, soft glow, "
                "a small fishing boat with a red sail fighting its way home through the high grey waves under the "
                "last light of the day, museum quality, gallery piece, highly detailed, sharp focus, award winning "
                "composition")

# 170 tokens, no commas: chunks of 75, 75 and 20.
LONG_NO_COMMAS = ("a very long prompt without any commas that keeps describing a quiet mountain village at dawn "
                  "where small wooden houses with red roofs line a narrow cobblestone street that winds up the hill "
                  "past a stone fountain and an old bakery whose chimney sends thin smoke into the cold morning air "
                  "while a black cat sleeps on a windowsill next to pots of bright geraniums and a baker in a white "
                  "apron carries fresh loaves of bread toward a wooden cart pulled by a patient brown horse as "
                  "church bells ring somewhere in the distance and the first rays of golden sunlight touch the "
                  "snowy peaks above the valley where a silver river flows slowly between green meadows full of "
                  "wild flowers and grazing sheep watched by a shepherd dog with a red collar sitting beside his "
                  "master who plays a small wooden flute while the morning mist slowly lifts from the forest at the "
                  "edge of the village and the day begins")

WEIGHTED_LONG = ("(masterpiece:1.2), ((best quality)), a portrait of a (young woman:1.1) with [freckles] and long "
                 "wavy (red hair:1.3) standing in a field of (sunflowers:0.8) at golden hour, soft rim light, "
                 "shallow depth of field, bokeh, 85mm lens, [[film grain]], warm tones, gentle smile, "
                 "looking at the viewer, (detailed eyes:1.4), natural skin texture, light summer dress with a "
                 "floral pattern, (wind in the hair:1.15), clouds in the sky, (((cinematic))), photorealistic, "
                 "high resolution, sharp focus on the face")

CHUNK_PROMPTS = [
    "a photo of an astronaut riding a horse on mars, highly detailed, digital art, trending on artstation, "
    "sharp focus, dramatic lighting, wide angle, vivid colors, 4k",
    "a (red:1.3) fox in [snow], ((cute)) x (y:-0.5) z",
    COMMA_PROMPT,
    LONG_NO_COMMAS,
    "a castle on a hill BREAK a dragon in the sky, (fire:1.2)",
    WEIGHTED_LONG,
    "",
]
STYLES = ["a1111", "comfy", "none"]


def make():
    tok = tokenizer()
    comma_token = tok.encode(",", add_special_tokens=False)
    assert len(comma_token) == 1 and comma_token[0] == tok.get_vocab()[",</w>"]
    comma_token = comma_token[0]

    a1111_parse = []
    for prompt in PARSE_PROMPTS:
        notes = []
        entry = {"prompt": prompt, "parsed": parse_a1111(prompt, notes)}
        if notes:
            entry["note"] = notes[0]
        a1111_parse.append(entry)
    comfy_parse = [{"prompt": p, "parsed": parse_comfy(p)} for p in PARSE_PROMPTS]
    for entry in a1111_parse:
        if entry["prompt"] in A1111_DOCTESTS:
            assert entry["parsed"] == A1111_DOCTESTS[entry["prompt"]], (entry, A1111_DOCTESTS[entry["prompt"]])
    print("A1111 doctests reproduced exactly")

    clip = CLIPTextModel.from_pretrained(fixture_path("tiny-sd", "text_encoder"), dtype=torch.float32).float().eval()
    chunks, tensors, index = [], {}, []
    with torch.no_grad():
        for prompt in CHUNK_PROMPTS:
            for style in STYLES:
                ids, weights = tokenize_line(tok, comma_token, prompt, style)
                assert all(len(c) == 77 for c in ids) and all(len(w) == 77 for w in weights)
                i = len(chunks)
                chunks.append({"prompt": prompt, "style": style, "ids": ids, "weights": weights})
                for clip_skip, key in ((1, f"cond.{i}"), (2, f"cond.{i}.skip2")):
                    tensors[key] = conditioning(clip, ids, weights, style, clip_skip)
                    index.append({"key": key, "prompt": prompt, "style": style, "clip_skip": clip_skip})
                n_tokens = sum(len(s) for s in tok([t for t, _ in segments(prompt, style)] or [""],
                                                   add_special_tokens=False)["input_ids"])
                print(f"{i:2d} {style:5s} {len(ids)} chunk(s), {n_tokens:3d} tokens, cond {tuple(tensors[f'cond.{i}'].shape)}"
                      f"  {prompt[:50]!r}")

    # The comma backtrack must matter for COMMA_PROMPT: its first chunk ends before 75 tokens.
    first = next(c for c in chunks if c["prompt"] == COMMA_PROMPT and c["style"] == "none")
    body = first["ids"][0][1:76]
    assert EOS in body and body.index(EOS) == 60 and len(first["ids"]) == 2, "comma prompt does not exercise the backtrack"
    print("comma backtrack: first chunk of the comma prompt holds", body.index(EOS), "tokens")
    assert len(next(c for c in chunks if c["prompt"] == LONG_NO_COMMAS)["ids"]) == 3

    with open(fixture_path("prompts.json"), "w") as f:
        json.dump({"a1111_parse": a1111_parse, "comfy_parse": comfy_parse, "chunks": chunks}, f,
                  ensure_ascii=False, indent=0)
    print("wrote Tests/Fixtures/prompts.json")
    save(tensors, fixture_path("prompts.safetensors"), metadata={"index": json.dumps(index, ensure_ascii=False)})


if __name__ == "__main__":
    make()
