#!/usr/bin/env bash
# Tests sdflow as users install it (scripts/test.sh runs this after `swift test`):
#  1. `make install PREFIX=TMP`: the installed binary runs a bundled workflow by name from a
#     folder outside the checkout, with the build folder out of sight; `make uninstall` removes
#     exactly what was installed.
#  2. scripts/build-deb.sh: the package installs with apt-get (as root; skipped otherwise), the
#     same run works from /usr/bin/sdflow, and apt-get remove takes every file away again.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0 skipped=0
check() {  # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@" >"$tmp/last.log" 2>&1; then
        passed=$((passed + 1)); echo "ok: $what"
    else
        failed=$((failed + 1)); echo "FAILED: $what"; sed 's/^/    /' "$tmp/last.log" | tail -20
    fi
}
# runs_inpaint BINARY: the bundled inpaint workflow by name, in a fresh folder outside the checkout.
runs_inpaint() {
    local work; work=$(mktemp -d -p "$tmp")
    (cd "$work" && env -u SDFLOW_DATA "$1" inpaint --quiet --cache-dir "$work/cache" --set steps=4) &&
        [ -s "$work/out/inpaint-42.png" ]
}

# 1. make install / uninstall
prefix="$tmp/prefix"
make -C "$root" install PREFIX="$prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
check "make install: sdflow run inpaint by name, outside the checkout" runs_inpaint "$prefix/bin/sdflow"
check "sdflow --version names the version, commit and kernels" \
    bash -c "'$prefix/bin/sdflow' --version | grep -q '^sdflow [0-9.]* (commit [0-9a-f]\{12\})' && '$prefix/bin/sdflow' --version | grep -q 'kernels:'"
check "sdflow workflows lists the bundled workflows" bash -c "'$prefix/bin/sdflow' workflows | grep -q '^inpaint '"
check "tokenize finds its vocabulary in PREFIX/share/sdflow" bash -c "'$prefix/bin/sdflow' tokenize 'a cat' | grep -q '^\[49406, 320, 2368, 49407'"
check "completions and man page installed" test -s "$prefix/share/bash-completion/completions/sdflow" -a -s "$prefix/share/zsh/site-functions/_sdflow" \
    -a -s "$prefix/share/fish/vendor_completions.d/sdflow.fish" -a -s "$prefix/share/man/man1/sdflow.1"
check "a missing data file is an error naming where sdflow looked" \
    bash -c "mv '$prefix/share/sdflow/tokenizer' '$tmp/tokenizer'; out=\$('$prefix/bin/sdflow' tokenize 'a cat' 2>&1); status=\$?;
             mv '$tmp/tokenizer' '$prefix/share/sdflow/tokenizer'; [ \$status = 1 ] && echo \"\$out\" | grep -q 'share/sdflow/tokenizer/html_entities.json'"
make -C "$root" uninstall PREFIX="$prefix" >"$tmp/uninstall.log" 2>&1
check "make uninstall removes every installed file" bash -c "[ -z \"\$(find '$prefix' -type f)\" ]"

# 2. The Debian package
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null && ! dpkg-query -W sdflow >/dev/null 2>&1; then
    deb=$("$root/scripts/build-deb.sh" --out "$tmp" 2>"$tmp/deb.log") || { cat "$tmp/deb.log"; exit 1; }
    check "the package's Depends name OpenBLAS, libpng and libjpeg-turbo" \
        bash -c "dpkg-deb -f '$deb' Depends | grep -q libopenblas && dpkg-deb -f '$deb' Depends | grep -q libpng16-16 && dpkg-deb -f '$deb' Depends | grep -q libjpeg62-turbo"
    check "apt-get install ./sdflow_*.deb" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb"
    check "packaged: sdflow run inpaint by name, outside the checkout" runs_inpaint /usr/bin/sdflow
    check "apt-get remove sdflow takes its files away" \
        bash -c "DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq sdflow && [ ! -e /usr/bin/sdflow ] && [ ! -e /usr/share/sdflow ]"
else
    skipped=$((skipped + 4)); echo "skipped: the Debian package (needs root, apt-get, and no sdflow package installed)"
fi
echo "install: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
