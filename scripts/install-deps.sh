#!/usr/bin/env bash
# Installs the Debian packages sdflow builds against (OpenBLAS, libpng, libjpeg-turbo), the
# single-node Slurm the tests start with scripts/slurm-local.sh (slurmctld, slurmd, slurm-client,
# munge) and the Chromium the browser test drives, only those that are missing. Uses sudo when not
# run as root.
set -euo pipefail
packages=(libopenblas-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev pkg-config
          slurmctld slurmd slurm-client munge chromium)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
