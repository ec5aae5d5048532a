#!/usr/bin/env bash
# Tools the test suite drives besides cargo: tmux (the end-to-end TUI test)
# and the `tensorboard` Python package in the torch python (the test that
# reads exported event files back). Installs them when missing and we may;
# otherwise says what to install. Tests never skip silently, so a missing
# tool fails the run here.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${MELTR_PYTHON:-./.torch-python}"
if ! "$python" -c "import tensorboard" >/dev/null 2>&1; then
  echo "test-deps: installing tensorboard into $python" >&2
  "$python" -m pip install --disable-pip-version-check -q tensorboard >&2 || {
    echo "test-deps: please install the tensorboard package for $python (needed by the TensorBoard export test)" >&2
    exit 1
  }
fi
missing=()
command -v tmux >/dev/null || missing+=(tmux)
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "test-deps: installing ${missing[*]}" >&2
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then
  sudo apt-get install -y -qq "${missing[@]}"
else
  echo "test-deps: please install ${missing[*]} (needed by the end-to-end TUI test)" >&2
  exit 1
fi
