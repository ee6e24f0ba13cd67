#!/usr/bin/env bash
# mypy over the pack (settings in pyproject.toml), run through a link with a valid package name: the repository
# root is a Python package (ComfyUI imports it; nodes/ imports ..gpen_core), and a clone in a folder named
# ComfyUI-GPEN is not a valid package name, which stops mypy before it checks anything.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT          # removes the link, never what it points to
ln -s "$root" "$work/comfyui_gpen"
cd "$work"
mypy --config-file comfyui_gpen/pyproject.toml --cache-dir "$root/.mypy_cache" comfyui_gpen/gpen_core comfyui_gpen/nodes "$@"
