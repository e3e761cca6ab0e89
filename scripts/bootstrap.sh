#!/usr/bin/env bash
# Make a Python environment with archfarm and its test tools, on a fresh Debian 12 as root or
# on any machine with Python >= 3.11. Idempotent; reinstalls only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "archfarm needs Python >= 3.11 (Debian 12's python3 is 3.11)" >&2
    exit 2
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "python3-venv is missing; run as root to install it" >&2; exit 2; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi

venv=.venv
stamp=$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    [ -x $venv/bin/python ] || "$python" -m venv $venv
    $venv/bin/python -m pip install -q --upgrade pip
    $venv/bin/python -m pip install -q -e ".[test]"
    rm -f $venv/.installed-*
    touch "$stamp"
fi
