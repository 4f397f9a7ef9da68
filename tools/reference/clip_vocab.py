"""CLIP's byte-level BPE vocabulary from sdflow's bundled merges file (no torch needed), numbered
as open_clip and openai/clip-vit-large-patch14's vocab.json number it."""
import gzip
import os

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB_GZ = os.path.join(HERE, "..", "..", "Sources", "DiffusionModels", "Resources", "bpe_simple_vocab_16e6.txt.gz")


def bytes_to_unicode():
    """GPT-2/CLIP's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def merges():
    """The 48,894 merges as (a, b) pairs, in rank order."""
    lines = gzip.open(VOCAB_GZ).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    return [tuple(line.split()) for line in lines]


def vocabulary(merge_list):
    """Token -> id: the byte symbols, the same with </w>, one token per merge, then the two specials."""
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [v + "</w>" for v in alphabet] + ["".join(m) for m in merge_list] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}
