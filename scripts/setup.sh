#!/usr/bin/env bash
# Creates .venv beside the repo (if missing), installs the pinned requirements into it, and
# installs bn_study (with configs/) editable, so scripts and tests import it without path edits.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
