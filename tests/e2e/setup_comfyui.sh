#!/usr/bin/env bash
# Builds a headless ComfyUI for the end-to-end tests (tests/e2e/test_*.py)
# from a ComfyUI source folder, and prints the two variables the tests read.
#
#   bash tests/e2e/setup_comfyui.sh COMFYUI_SRC [VENV_DIR]
#
# COMFYUI_SRC: a ComfyUI source tree (main.py, requirements.txt), e.g. a clone of Comfy-Org/ComfyUI.
# VENV_DIR:    where its virtual environment goes (default: COMFYUI_SRC/.venv).
#
# What it does, each step skipped when already done:
#   1. a venv with CPU torch (TORCH_VERSION) and torchvision (TORCHVISION_VERSION) from PyPI. When torchvision's
#      compiled ops do not load beside that torch (PyPI's torchvision is built for another torch), only its two
#      unconditional op registrations are made conditional, in the venv's copy: ComfyUI uses torchvision's Python
#      parts only (transforms), never its compiled ops. ComfyUI's source is not touched.
#   2. ComfyUI's requirements (without torch/torchvision/torchaudio: there is no torchaudio for this torch, so
#      ComfyUI's audio nodes report IMPORT FAILED and the rest works), plus requests, which ComfyUI imports.
#   3. this pack's requirements and test requirements, facenet-pytorch (MTCNN weights, --no-deps as in .ci/run)
#      and playwright (driving a system Chromium: playwright's own browser download is never used).
#   4. this pack linked as COMFYUI_SRC/custom_nodes/ComfyUI-GPEN (for running ComfyUI by hand; the tests make
#      their own --base-directory and link the pack there).
#   5. Debian's chromium when /usr/bin/chromium is missing and apt-get can be run (root); else it says so.
# Environment: PYTHON (default python3) makes the venv; NO_BROWSER=1 skips playwright and Chromium.
set -euo pipefail

TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
PACK_NAME=ComfyUI-GPEN

die() { echo "setup_comfyui.sh: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: bash tests/e2e/setup_comfyui.sh COMFYUI_SRC [VENV_DIR]"
[ -f "$1/main.py" ] && [ -f "$1/requirements.txt" ] || die "$1 is not a ComfyUI source folder (no main.py or requirements.txt)"
COMFYUI_DIR=$(cd "$1" && pwd)
VENV_DIR=${2:-$COMFYUI_DIR/.venv}
PACK_DIR=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$PACK_DIR/nodes/extension.py" ] || die "cannot find the pack beside this script ($PACK_DIR)"

step "virtual environment: $VENV_DIR"
[ -x "$VENV_DIR/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV_DIR"
PY=$VENV_DIR/bin/python
pip_install() { "$PY" -m pip install -q "$@"; }

step "torch $TORCH_VERSION (CPU), torchvision $TORCHVISION_VERSION"
pip_install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
if ! "$PY" -c "import torchvision" 2>/dev/null; then
    TV_DIR=$("$PY" -c "import importlib.util as u; print(u.find_spec('torchvision').submodule_search_locations[0])")
    META=$TV_DIR/_meta_registrations.py
    grep -q '^@torch\.library\.register_fake("torchvision::' "$META" \
        || die "torchvision does not import and $META has no op registration to make optional; see: $PY -c 'import torchvision'"
    echo "torchvision's compiled ops do not load beside this torch: its op registrations in $META become conditional"
    sed -i -E 's/^@torch\.library\.register_fake\(("torchvision::[a-z_]+")\)$/@(torch.library.register_fake(\1) if torchvision.extension._has_ops() else (lambda fn: fn))/' "$META"
    "$PY" -c "import torchvision, torchvision.transforms.functional" || die "torchvision still does not import"
fi

step "ComfyUI's requirements (torch, torchvision, torchaudio left out)"
REQS=$(mktemp)
trap 'rm -f "$REQS"' EXIT
grep -vE '^[[:space:]]*(torch|torchvision|torchaudio)[[:space:]]*([<>=!~;].*)?$' "$COMFYUI_DIR/requirements.txt" > "$REQS"
pip_install -r "$REQS" requests "torch==$TORCH_VERSION"

step "this pack's requirements and the test tools"
pip_install -r "$PACK_DIR/requirements.txt" -r "$PACK_DIR/requirements-test.txt" "torch==$TORCH_VERSION"
pip_install --no-deps facenet-pytorch==2.6.0
[ "${NO_BROWSER:-0}" = 1 ] || pip_install playwright

step "the pack in custom_nodes/"
LINK=$COMFYUI_DIR/custom_nodes/$PACK_NAME
mkdir -p "$COMFYUI_DIR/custom_nodes"
if [ -L "$LINK" ] && [ "$(readlink -f "$LINK")" = "$(readlink -f "$PACK_DIR")" ]; then
    echo "$LINK already links to $PACK_DIR"
elif [ -e "$LINK" ] || [ -L "$LINK" ]; then
    die "$LINK exists and is not a link to $PACK_DIR: move it away, then run this again"
else
    ln -s "$PACK_DIR" "$LINK"
    echo "linked $LINK -> $PACK_DIR"
fi

if [ "${NO_BROWSER:-0}" != 1 ]; then
    step "Chromium for the browser test"
    if [ -x /usr/bin/chromium ]; then
        echo "/usr/bin/chromium is there"
    elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -q && apt-get install -y -q chromium
    else
        echo "no /usr/bin/chromium: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH;" \
             "without it the browser test skips"
    fi
fi

step "check: ComfyUI's Python imports what the tests need"
"$PY" -c "import torch, torchvision, av, aiohttp, numpy, PIL, safetensors, pytest; print('torch', torch.__version__)"

cat <<EOF

Done. For the end-to-end tests, from the pack's folder ($PACK_DIR):

export COMFYUI_DIR=$COMFYUI_DIR
export COMFYUI_PYTHON=$PY
"\$COMFYUI_PYTHON" -m pytest -q tests/e2e/

To run this ComfyUI by hand: cd "$COMFYUI_DIR" && "$PY" main.py --cpu
EOF
