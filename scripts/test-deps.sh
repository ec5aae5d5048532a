#!/usr/bin/env bash
# Tools the test suite drives besides cargo: tmux (the end-to-end TUI test).
# Installs them with apt-get when missing and we may; otherwise says what to
# install. Tests never skip silently, so a missing tool fails the run here.
set -euo pipefail
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
