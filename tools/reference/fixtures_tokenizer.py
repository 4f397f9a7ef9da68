"""Golden CLIP token ids for varied prompts, from transformers' slow CLIPTokenizer with ftfy
(transformers 4.x, as diffusers and ComfyUI have used it), over sdflow's bundled vocabulary.

transformers 5 replaced the slow tokenizer, so this script runs in its own small venv:

    python3 -m venv ~/.venvs/sdflow-tok
    ~/.venvs/sdflow-tok/bin/pip install -r tools/reference/requirements-tokenizer.txt
    ~/.venvs/sdflow-tok/bin/python tools/reference/fixtures_tokenizer.py

Writes Tests/Fixtures/tokenizer/prompts.jsonl (one {"text", "ids"} object per line) and a tiny
vocab.json/merges.txt pair with its own golden ids, for the diffusers-folder tokenizer path.
"""
import json
import os
import random
import tempfile

from transformers import CLIPTokenizer

import clip_vocab

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "Tests", "Fixtures", "tokenizer")


def write_vocab(folder, merge_list):
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(clip_vocab.vocabulary(merge_list), f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merge_list) + "\n")


HAND_WRITTEN = [
    "a photo of an astronaut riding a horse on mars",
    "", " ", "   \t\n  ", "a", "A", "?", "...", "!!!", "a  b   c", "  leading and trailing  ",
    "masterpiece, best quality, 1girl, solo, long hair, looking at viewer, smile",
    "(masterpiece:1.2), (best quality:1.3), [blurry], {detailed}, <lora:foo:0.8>",
    "a red circle on a white background", "A BLUE SQUARE ON A GREEN BACKGROUND",
    "portrait of a woman, 85mm f/1.8, 4k, 8K UHD, HDR, 1920x1080, 16:9",
    "it's a dog's life; don't worry, we'll see, they've gone, I'm here, you'd know, I'll go",
    "IT'S DON'T WE'LL THEY'VE I'M YOU'D I'LL", "rock'n'roll o'clock", "''s '' 'tis 'twas",
    "price: $100.50 (50% off!) #1 @home & more", "email me at someone@example.com or visit https://example.com/a?b=c",
    "3.14159 2,718 1e-10 0x1F -42 +7 ½ ¾ ² ³ ⁴ ₂ Ⅻ ① 一二三",
    "café naïve Zürich São Paulo Ångström résumé façade jalapeño Œuvre",
    "e\u0301 vs é (combining acute vs precomposed)", "Ａ ＢＣ １２３ ＡＢＣ！ fullwidth",
    "ﬁne ﬂower ﬀ ﬃ ﬄ ligatures", "“curly double” and ‘curly single’ quotes, „low“ ‚low‘",
    "don’t won’t it’s", "Tom &amp; Jerry &lt;3 &quot;quoted&quot; &#39;single&#39; &#x2764; &hellip; &nbsp;x",
    "<b>bold</b> &amp; <i>italic</i>", "a\u00a0non-breaking\u2009thin\u3000ideographic space",
    "zero\u200bwidth\u200cjoiners\u200d here", "tab\tnew\nline\r\ncarriage\rreturn\x0bvertical\x0cfeed",
    "control\x00null\x07bell\x1bescape[31mred", "soft\u00adhyphen and\ufeffbom",
    "Москва красная площадь", "Αθήνα ΟΔΥΣΣΕΥΣ σίσυφος", "東京タワーの夜景", "서울의 밤 풍경", "北京烤鸭 和 上海",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới", "İstanbul ıspanak IĞDIR",
    "STRASSE straße ẞ", "ǅemal ǈ ǋ", "ΣΊΣΥΦΟΣ ΟΔΟΣ", "ﬆ ﬅ Ĳ ĳ",
    "🐱 cat emoji 🐶🐭", "thumbs 👍🏽 up", "family 👨‍👩‍👧‍👦 emoji", "flags 🇯🇵 🇺🇸 🏳️‍🌈", "keycap 1️⃣ #️⃣",
    "❤️ ♥ ☀ ☁ ★ ✨ ⚡", "math ∑ ∫ √ ∞ ≈ ≠ ≤ ≥ π θ", "©®™ °C ± × ÷ § ¶ † ‡ • ·",
    "arrows → ← ↑ ↓ ⇒ ⇔", "box ─│┌┐└┘ ░▒▓█", "music ♪ ♫ ♬", "dingbats ✓ ✗ ✔ ✘",
    "ALL CAPS SHOUTING PROMPT WITH NUMBERS 123", "MiXeD CaSe WoRdS", "snake_case and kebab-case and CamelCase",
    "hyphen-ated word--double dash — em dash – en dash", "ellipsis… and ... and . . .", "semi;colon:colon,comma.",
    "slashes / \\ | and brackets [] () {} <>", "repeated!!!!!!???????", "~tilde~ `backtick` ^caret^ *star*",
    "very detailed, intricate, " * 12,
    " ".join(["word"] * 80),
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "<|startoftext|> hello <|endoftext|> world", "<|endoftext|>", "<|ENDOFTEXT|>",
    "a" * 100, "ab" * 60, "1234567890" * 5, "!@#$%^&*()_+-=[]{}|;':\",./<>?",
    "Ω ℃ ℉ № ℡ ™ ℮", "ß ẞ ŉ ǰ ΐ ΰ", "K (kelvin sign) Å (angstrom sign) Ω (ohm sign)",
    "one\u2028line\u2029separator", "next\u0085line", "mongolian\u180evowel", "ogham\u1680space",
    # ftfy corner cases: repeated unescaping, the ';' rule, upper-case entities, sticky '<' per line,
    # half-width kana with voiced marks, the full-width macron, final sigma, U+0345, long-s contraction.
    "&amp;amp;amp; &#59; &#x3b; &semi; &SZLIG; &Ntilde; &nTILDE; &#x1F600; &#0; &#1; &#xFFFE; &#65a; &amp",
    "&amp;\n<b>\n&amp;", "x&amp;\ry<\u2028&amp;", "&lt;|endoftext|&gt; x", "&amp;lt;b&amp;gt;",
    "ｶﾞｷﾞ ﾊﾟ \uffe3 \uffe0\uffe1 ＂quoted＂ ＇", "ΑΣ Α ΑΣΑ Α'Σ 1Σ Σ", "x \u0345 y !\u0345!", "it'ſ 'S 'T",
    "\x1b]0;title\x07X \x1b[\u0661mY \x91hi\x92 \x80 \x81", "<|startoftext|>a<|endoftext|>b  <|endoftext|>",
    "\u2066isolate\u2069 \u200eLRM\u200f \u00ad\ufff9anchor\ufffc", "e\u0301\u0301 \u1e9b\u0323",
]

WORDS = ["cat", "dog", "mountain", "sunset", "castle", "neon", "cyberpunk", "portrait", "watercolor", "oil",
         "painting", "trending", "artstation", "octane", "render", "unreal", "engine", "cinematic", "lighting",
         "volumetric", "fog", "golden", "hour", "bokeh", "macro", "photo", "hyperrealistic", "studio", "ghibli",
         "anime", "pixar", "3d", "sharp", "focus", "illustration", "concept", "art", "by", "greg", "rutkowski",
         "alphonse", "mucha", "café", "niño", "Übermensch", "façade", "日本", "красный", "🌸", "🔥", "✨", "💀"]
PUNCT = [", ", ". ", "! ", "? ", "; ", ": ", " - ", " (", ") ", " [", "] ", " {", "} ", " | ", " / ", "'s ", "'", "\"", " ... "]


def generated(n, seed=7):
    rng = random.Random(seed)
    prompts = []
    for i in range(n):
        parts = []
        for _ in range(rng.randint(1, 30)):
            w = rng.choice(WORDS)
            r = rng.random()
            if r < 0.15:
                w = w.upper()
            elif r < 0.25:
                w = w.capitalize()
            elif r < 0.3:
                w = w + str(rng.randint(0, 999))
            parts.append(w)
            parts.append(rng.choice(PUNCT) if rng.random() < 0.3 else " " * rng.randint(1, 3))
        prompts.append("".join(parts))
    return prompts


def main():
    os.makedirs(OUT, exist_ok=True)
    merges = clip_vocab.merges()
    with tempfile.TemporaryDirectory() as folder:
        write_vocab(folder, merges)
        tok = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))
    assert tok.fix_text is not None, "ftfy must be installed: the reference is the ftfy path"
    prompts = HAND_WRITTEN + generated(200)
    with open(os.path.join(OUT, "prompts.jsonl"), "w", encoding="utf-8") as f:
        for text in prompts:
            ids = tok(text, padding="max_length", max_length=77, truncation=True).input_ids
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False) + "\n")
    print(f"wrote {len(prompts)} prompts")

    # A tiny vocabulary (bytes plus a few merges) for the folder path.
    tiny = os.path.join(OUT, "tiny-vocab")
    os.makedirs(tiny, exist_ok=True)
    write_vocab(tiny, merges[:300])
    tok = CLIPTokenizer(os.path.join(tiny, "vocab.json"), os.path.join(tiny, "merges.txt"))
    # The same vocabulary as a tokenizers-library tokenizer.json only (as transformers 5 saves folders).
    from transformers import CLIPTokenizerFast
    fast = os.path.join(OUT, "tiny-vocab-json")
    with tempfile.TemporaryDirectory() as folder:
        CLIPTokenizerFast(os.path.join(tiny, "vocab.json"), os.path.join(tiny, "merges.txt")).save_pretrained(folder)
        os.makedirs(fast, exist_ok=True)
        os.replace(os.path.join(folder, "tokenizer.json"), os.path.join(fast, "tokenizer.json"))
    with open(os.path.join(OUT, "tiny-vocab-prompts.jsonl"), "w", encoding="utf-8") as f:
        for text in prompts[:40]:
            ids = tok(text, padding="max_length", max_length=77, truncation=True).input_ids
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
