#!/usr/bin/env bash
# Builds sdflow in release mode and installs it (`make install` runs this):
#
#   scripts/install.sh [--prefix /usr/local] [--destdir STAGING]   # install
#   scripts/install.sh [--prefix /usr/local] --uninstall           # remove exactly what was installed
#
# Installs PREFIX/bin/sdflow (the Swift runtime linked in statically, so it needs only the
# system libraries of scripts/install-deps.sh), its data in PREFIX/share/sdflow (CLIP vocabulary
# and HTML-entity table under tokenizer/, the bundled workflows, the demo model, the example
# inputs, BUILD with the version and commit), bash, zsh and fish completions and the man page
# sdflow.1. Every installed file is listed in PREFIX/share/sdflow/installed-files, which
# --uninstall reads. --destdir stages the same tree under STAGING (for packages) without a list.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/usr/local
destdir=""
uninstall=false
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) destdir=$2; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --uninstall) uninstall=true; shift ;;
        *) echo "usage: $0 [--prefix DIR] [--destdir DIR] [--uninstall]" >&2; exit 2 ;;
    esac
done
case $prefix in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac
manifest="$prefix/share/sdflow/installed-files"

if $uninstall; then
    [ -f "$manifest" ] || { echo "sdflow is not installed in $prefix (no $manifest)" >&2; exit 1; }
    # Files first, then the folders they leave empty (deepest first), then the list itself.
    while IFS= read -r file; do rm -f "$file"; done < "$manifest"
    rm -f "$manifest"
    for dir in "$prefix/share/sdflow" "$prefix/share/bash-completion/completions" "$prefix/share/zsh/site-functions" \
               "$prefix/share/fish/vendor_completions.d" "$prefix/share/man/man1"; do
        [ -d "$dir" ] && find "$dir" -depth -type d -empty -delete
    done
    echo "removed sdflow from $prefix"
    exit 0
fi

"$root/scripts/install-deps.sh"
echo "building sdflow (release, static Swift runtime) ..." >&2
scratch="$root/.build-install"
(cd "$root" && swift build -c release --product sdflow --static-swift-stdlib --scratch-path "$scratch" >&2)
binary="$scratch/release/sdflow"

stage="$destdir$prefix"
data="$stage/share/sdflow"
installed=()
put() {  # put SOURCE DEST [MODE]
    install -D -m "${3:-644}" "$1" "$2"
    installed+=("${2#"$destdir"}")
}
put "$binary" "$stage/bin/sdflow" 755
put "$root/Sources/DiffusionModels/Resources/bpe_simple_vocab_16e6.txt.gz" "$data/tokenizer/bpe_simple_vocab_16e6.txt.gz"
put "$root/Sources/DiffusionModels/Resources/html_entities.json" "$data/tokenizer/html_entities.json"
for folder in workflows models/sdflow-demo examples; do
    while IFS= read -r file; do
        put "$root/$file" "$data/$file"
    done < <(cd "$root" && git ls-files "$folder" 2>/dev/null | grep -v '^examples/kubernetes/' || (cd "$root" && find "$folder" -type f))
done
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
printf 'commit %s\n' "$commit" > "$root/.build-install/BUILD"
put "$root/.build-install/BUILD" "$data/BUILD"

# Completions and the man page come from the installed binary's own help.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SDFLOW_DATA="$data" "$stage/bin/sdflow" --generate-completion-script bash > "$tmp/sdflow.bash"
SDFLOW_DATA="$data" "$stage/bin/sdflow" --generate-completion-script zsh > "$tmp/_sdflow"
SDFLOW_DATA="$data" "$stage/bin/sdflow" --generate-completion-script fish > "$tmp/sdflow.fish"
SDFLOW_DATA="$data" "$stage/bin/sdflow" manual > "$tmp/sdflow.1"
put "$tmp/sdflow.bash" "$stage/share/bash-completion/completions/sdflow"
put "$tmp/_sdflow" "$stage/share/zsh/site-functions/_sdflow"
put "$tmp/sdflow.fish" "$stage/share/fish/vendor_completions.d/sdflow.fish"
put "$tmp/sdflow.1" "$stage/share/man/man1/sdflow.1"

if [ -z "$destdir" ]; then
    printf '%s\n' "${installed[@]}" > "$manifest"
fi
echo "installed sdflow in $destdir$prefix (${#installed[@]} files); try: sdflow run inpaint" >&2
