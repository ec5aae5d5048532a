#!/usr/bin/env bash
# Makes torch 2.11.0 (the libtorch that tch 0.24 expects) available to cargo
# by linking it at ./.libtorch (see .cargo/config.toml). In order, it uses:
#   1. $MELTR_LIBTORCH: a torch/libtorch folder with include/ and lib/;
#   2. the current ./.libtorch link, if it still points at torch 2.11.0;
#   3. torch 2.11.0 in your python3 (`pip install torch==2.11.0`);
#   4. a cached install in $MELTR_CACHE (default ~/.cache/meltr-tui);
#   5. otherwise it installs torch==2.11.0 there with pip (~4.6 GB, once).
set -euo pipefail
cd "$(dirname "$0")/.."
want=2.11.0
cache=${MELTR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meltr-tui}
python=${PYTHON:-python3}

say() { printf 'setup: %s\n' "$*" >&2; }

# Prints the version of the torch folder $1 (pip layout or libtorch zip).
version_of() {
  if [ -f "$1/version.py" ]; then
    sed -n "s/^__version__ = '\([^']*\)'.*/\1/p" "$1/version.py"
  elif [ -f "$1/build-version" ]; then
    cat "$1/build-version"
  fi
}

usable() {
  [ -n "$1" ] && [ -f "$1/lib/libtorch.so" ] && [ -d "$1/include" ] &&
    [ "$(version_of "$1" | cut -d+ -f1)" = "$want" ]
}

torch_dir_of_python() {
  "$1" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null || true
}

# Writes .torch-python, a script that runs python $1 (a wrapper, not a
# link: a venv's python finds its packages only when called by its own path).
python_wrapper() {
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$1" > .torch-python
  chmod +x .torch-python
}

# Links torch folder $1 at .libtorch and, when known, the python $2 that
# has it at .torch-python (the example exporter and its tests use it).
link() {
  ln -sfn "$1" .libtorch
  if [ -n "${2:-}" ]; then python_wrapper "$(command -v "$2")"; fi
  say "using torch $(version_of "$1") from $1"
  exit 0
}

if [ -n "${MELTR_LIBTORCH:-}" ]; then
  usable "$MELTR_LIBTORCH" && link "$MELTR_LIBTORCH"
  say "MELTR_LIBTORCH=$MELTR_LIBTORCH is not a torch $want folder (needs lib/libtorch.so, include/, version $want)"
  exit 1
fi
if [ -L .libtorch ] && usable "$(readlink .libtorch)"; then
  # A pip layout's interpreter: <prefix>/lib/pythonX.Y/site-packages/torch.
  guess="$(cd "$(readlink .libtorch)/../../../.." && pwd -P)/bin/python3"
  if [ ! -e .torch-python ] && [ -x "$guess" ]; then python_wrapper "$guess"; fi
  exit 0
fi
if command -v "$python" >/dev/null; then
  dir=$(torch_dir_of_python "$python")
  usable "$dir" && link "$dir" "$python"
fi
venv="$cache/venv"
dir=$(torch_dir_of_python "$venv/bin/python")
usable "$dir" && link "$dir" "$venv/bin/python"

command -v "$python" >/dev/null || { say "need python3 (3.10+) to install torch $want"; exit 1; }
say "installing torch $want into $venv (about 4.6 GB with its CUDA libraries; once per machine)..."
mkdir -p "$cache"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install --disable-pip-version-check "torch==$want" >&2
dir=$(torch_dir_of_python "$venv/bin/python")
usable "$dir" && link "$dir" "$venv/bin/python"
say "pip finished but no usable torch $want was found in $venv"
exit 1
