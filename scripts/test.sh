#!/usr/bin/env bash
# The test command of the README: installs missing system packages, runs every Swift test, then
# tests sdflow as users install it (scripts/test-install.sh: make install, the Debian package).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift test "$@"
[ $# -gt 0 ] || scripts/test-install.sh   # (not with a --filter or other swift test arguments)
