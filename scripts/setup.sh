#!/usr/bin/env bash
# Creates .venv beside the repo (if missing) and installs the pinned requirements into it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
