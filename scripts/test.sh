#!/usr/bin/env bash
# The test command of the README: installs missing system packages, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift test "$@"
