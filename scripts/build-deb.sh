#!/usr/bin/env bash
# Builds the Debian package sdflow_VERSION_amd64.deb (in the current folder, or --out DIR):
# scripts/install.sh stages /usr/bin/sdflow (Swift runtime linked in statically), its data in
# /usr/share/sdflow, completions and the man page, and dpkg-deb packs them with the system
# libraries sdflow loads as Depends. Install it with `apt-get install ./sdflow_VERSION_amd64.deb`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out=$(pwd)
[ "${1:-}" = --out ] && { out=$(cd "$2" && pwd); }
version=$(sed -n 's/^ *static let number = "\(.*\)"$/\1/p' "$root/Sources/sdflow/Version.swift")
[ -n "$version" ] || { echo "no version in Sources/sdflow/Version.swift" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
"$root/scripts/install.sh" --prefix /usr --destdir "$stage"

# Depends: the package of every shared library the binary loads (dpkg -S), with its version.
depends=$(ldd "$stage/usr/bin/sdflow" | awk '/=> \// { print $3 }' | while read -r lib; do
    real=$(readlink -f "$lib")
    dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || true
done | cut -d: -f1 | sort -u | while read -r package; do
    echo "$package (>= $(dpkg-query -W -f='${Version}' "$package" | sed 's/-[^-]*$//'))"
done | paste -sd, | sed 's/,/, /g')
size=$(du -sk "$stage" | cut -f1)
mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: sdflow
Version: $version
Architecture: amd64
Maintainer: sdflow developers <sdflow@localhost>
Installed-Size: $size
Depends: $depends
Section: graphics
Priority: optional
Homepage: https://github.com/sdflow/sdflow
Description: Stable Diffusion 1.x image-editing workflows on the CPU
 sdflow runs YAML workflows (load, VAE encode, CLIP encode, guided denoising,
 inpainting, VAE decode, save) on SD 1.x checkpoints, numerically as diffusers
 does, with cached intermediate results and folder batches that stream.
 Includes a tiny demo model and the bundled workflows (`sdflow workflows`).
CONTROL
file="$out/sdflow_${version}_amd64.deb"
dpkg-deb --root-owner-group --build "$stage" "$file" >&2
echo "$file"
