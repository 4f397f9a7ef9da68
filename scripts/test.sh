#!/usr/bin/env bash
# The test command of the README: installs missing system packages (and fetches ComfyUI's web front
# end for the browser test), runs every Swift test, then
# tests sdflow as users install it (scripts/test-install.sh: make install, the Debian package), and
# runs each fuzz harness for 15 seconds (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# ComfyUI's web front end for the browser test of `sdflow serve` (skipped, saying so, without it).
if frontend=$(scripts/fetch-frontend.sh); then export SDFLOW_FRONTEND="$frontend"
else echo "note: ComfyUI's front end could not be fetched; the browser test will be skipped"; fi
swift test "$@"
if [ $# -eq 0 ]; then   # (not with a --filter or other swift test arguments)
    scripts/test-install.sh
    scripts/fuzz.sh --seconds 15   # every fuzz harness briefly; long runs: scripts/fuzz.sh --runs 10000000
fi
