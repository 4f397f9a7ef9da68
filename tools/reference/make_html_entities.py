"""Writes the HTML entity table ftfy 6.3.1 decodes (its chardata.HTML_ENTITIES: every HTML5 name
ending in ';', plus upper-case variants) as Sources/DiffusionModels/Resources/html_entities.json,
for the tokenizer's ftfy-compatible text cleanup. Run with the tokenizer venv (ftfy installed)."""
import json
import os

from ftfy.chardata import HTML_ENTITIES

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "Sources", "DiffusionModels", "Resources", "html_entities.json")

with open(OUT, "w", encoding="utf-8") as f:
    json.dump(dict(sorted(HTML_ENTITIES.items())), f, ensure_ascii=False, separators=(",", ":"))
print(f"wrote {len(HTML_ENTITIES)} entities to {OUT}")
