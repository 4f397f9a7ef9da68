#!/usr/bin/env bash
# The test command of the README: installs missing system packages, runs every Swift test, then
# tests sdflow as users install it (scripts/test-install.sh: make install, the Debian package), and
# runs each fuzz harness for 15 seconds (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift test "$@"
if [ $# -eq 0 ]; then   # (not with a --filter or other swift test arguments)
    scripts/test-install.sh
    scripts/fuzz.sh --seconds 15   # every fuzz harness briefly; long runs: scripts/fuzz.sh --runs 10000000
fi
