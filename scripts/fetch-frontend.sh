#!/usr/bin/env bash
# Fetches ComfyUI's web front end (the comfyui-frontend-package wheel from PyPI, only its static
# files) into FOLDER (default ~/.cache/sdflow/comfyui-frontend-VERSION) for `sdflow serve
# --front-end` and the browser test, and prints the static folder. Uses pip to download the wheel
# when there is one, else PyPI's JSON API with curl; unzip or Python's zipfile unpacks it.
set -euo pipefail
version=1.27.10   # the version ComfyUI 0.3.64 pins; docs/server.md names it
folder=${1:-"${XDG_CACHE_HOME:-$HOME/.cache}/sdflow/comfyui-frontend-$version"}
if [ -f "$folder/comfyui_frontend_package/static/index.html" ]; then echo "$folder/comfyui_frontend_package/static"; exit 0; fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if command -v pip >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1; then
    $(command -v pip || command -v pip3) download -q --no-deps -d "$work" "comfyui-frontend-package==$version" >&2
else
    url=$(curl -fsSL "https://pypi.org/pypi/comfyui-frontend-package/$version/json" | grep -o '"url": *"[^"]*\.whl"' | head -1 | sed 's/.*"\(https[^"]*\)"/\1/')
    curl -fsSL -o "$work/frontend.whl" "$url"
fi
mkdir -p "$folder"
wheel=$(ls "$work"/*.whl)
if command -v unzip >/dev/null 2>&1; then unzip -q -o "$wheel" 'comfyui_frontend_package/static/*' -d "$folder"
else python3 -m zipfile -e "$wheel" "$folder"; fi
echo "$folder/comfyui_frontend_package/static"
