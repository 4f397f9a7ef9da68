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

# Depends: the package of each library the binary links directly (readelf's NEEDED, found where
# ldd resolves it, owner from dpkg -S), at least at the version built against. OpenBLAS is asked
# for as libopenblas0, which any of its builds (pthread, openmp, serial) satisfies.
binary="$stage/usr/bin/sdflow"
depends=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r needed; do
    lib=$(ldd "$binary" | awk -v n="$needed" '$1 == n { print $3 } $1 ~ ("/" n "$") { print $1 }')
    [ -n "$lib" ] || { echo "cannot resolve $needed" >&2; exit 1; }
    dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")"
done | cut -d: -f1 | sort -u | while read -r package; do
    version=$(dpkg-query -W -f='${Version}' "$package" | sed 's/-[^-]*$//')
    case $package in libopenblas0-*) package=libopenblas0 ;; esac
    echo "$package (>= $version)"
done | sort -u | paste -sd, | sed 's/,/, /g')
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
