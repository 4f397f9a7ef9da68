"""AUTOMATIC1111-style images for `sdflow import`: the generation parameters written the way
A1111 writes them (modules/images.py save_image_with_geninfo): a PNG `parameters` text chunk,
and for JPEG and WebP an EXIF UserComment made by piexif (`UserComment.dump(text,
encoding="unicode")`, UTF-16 big-endian after the "UNICODE\\0" prefix). Writes
Tests/Fixtures/a1111/{txt2img.png, img2img.jpg, hires.webp} and expected.json (the text of each,
and what A1111's parse_generation_parameters makes of it: prompt, negative prompt, settings).
Needs Pillow and piexif (pip install piexif).
"""
import json
import re

import piexif
import piexif.helper
from PIL import Image, PngImagePlugin

from common import fixture_path

TEXTS = {
    "txt2img.png": 'a castle on a hill, (masterpiece:1.2), <lora:detail tweaker:0.6>, [blurry]\nsecond line of the prompt\n'
                   'Negative prompt: lowres, bad anatomy\nugly\n'
                   'Steps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1234567890, Size: 512x768, '
                   'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, '
                   'Lora hashes: "detail tweaker: 7d4e6cbb1a2b", ENSD: 31337, Version: v1.6.0',
    "img2img.jpg": 'portrait of a woman, oil painting, <lora:style_a:0.8> <lora:style_b>\n'
                   'Steps: 30, Sampler: Euler a, CFG scale: 6, Seed: 42, Size: 512x512, Model hash: abc, '
                   'Denoising strength: 0.45, Mask blur: 4, RNG: CPU, Version: v1.9.4',
    "hires.webp": 'a cat\nNegative prompt: dog\n'
                  'Steps: 20, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 5, Seed: 7, Size: 512x512, '
                  'Denoising strength: 0.7, Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, Version: v1.9.4',
}

# A1111's modules/infotext_utils.py parse_generation_parameters (the parts that matter here).
re_param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse(text):
    res = {}
    prompt, negative, done = "", "", False
    *lines, lastline = text.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done = True
            line = line[16:].strip()
        if done:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    settings = []
    for k, v in re_param.findall(lastline):
        if v and v[0] == '"' and v[-1] == '"':
            v = json.loads(v)
        settings.append([k, v])
    return {"prompt": prompt, "negative": negative, "settings": settings}


def main():
    image = Image.new("RGB", (16, 16), (200, 80, 40))
    expected = {}
    for name, text in TEXTS.items():
        path = fixture_path("a1111", name)
        if name.endswith(".png"):
            info = PngImagePlugin.PngInfo()
            info.add_text("parameters", text)
            image.save(path, pnginfo=info)
        else:
            exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(text, encoding="unicode")}})
            image.save(path, exif=exif, quality=90)
        expected[name] = {"text": text, **parse(text)}
    with open(fixture_path("a1111", "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
    print("wrote", ", ".join(expected))


if __name__ == "__main__":
    main()
