#!/usr/bin/env bash
# Regenerates the README's pictures (docs/images) by running the bundled workflows on the demo
# model with sdflow itself: txt2img for a few prompts, img2img and inpainting of the example photo.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=docs/images
mkdir -p "$out"
run() { ./scripts/sdflow "$@" --no-cache; }
for prompt in "a red circle on a white background" "a blue square on a yellow background" \
              "a green star on a black background" "a purple triangle on a gray background"; do
    name=$(echo "$prompt" | awk '{print $2 "-" $3}')
    run workflows/txt2img.yaml --set prompt="$prompt" --set output="$out/txt2img-$name.png"
done
cp examples/photo.png "$out/photo.png"
cp examples/mask.png "$out/mask.png"
run workflows/img2img.yaml --set strength=0.6 --set prompt="a red star on a white background" \
    --set output="$out/img2img-red-star.png"
run workflows/inpaint.yaml --set output="$out/inpaint-blue-circle.png"
