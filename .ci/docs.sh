#!/usr/bin/env bash
# Build the documentation (docs/, Sphinx) with warnings as errors, as CI does; silent when it succeeds, so that CI's
# last lines stay the test summary. Run it after `pip install -e ".[test]"` (it reuses those packages).
# DOCS_OUT=folder keeps the HTML (default: a temporary folder, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# The docs extra goes into a virtual environment layered on the installed packages (torch, SB3, the test extra):
# Sphinx needs a newer docutils than other tools of the machine may accept, so it stays out of their site-packages.
python -m venv --system-site-packages "$tmp/venv"
if ! "$tmp/venv/bin/python" -m pip install --disable-pip-version-check -e ".[docs]" >"$tmp/pip.log" 2>&1; then
    cat "$tmp/pip.log" >&2
    exit 1
fi
# python -m sphinx, not the venv's sphinx-build script: where Sphinx is already in the base packages, pip installs no
# script into the venv
"$tmp/venv/bin/python" -m sphinx -q -W --keep-going -b html docs "${DOCS_OUT:-$tmp/html}"
