#!/usr/bin/env bash
# Create .venv and install the project with the given extras (default: none).
#
#   scripts/bootstrap.sh [EXTRAS]      e.g. scripts/bootstrap.sh test
#
# torch is installed first at the tested release, 2.13.0. On Linux, PyPI's
# build of it includes CUDA (several GB); set WAVECLS_TORCH_INDEX_URL to a CPU
# wheel index (for example https://download.pytorch.org/whl/cpu) to avoid that.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=${1:-}
venv=${WAVECLS_VENV:-.venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

index_args=()
if [ -n "${WAVECLS_TORCH_INDEX_URL:-}" ]; then
    index_args=(--extra-index-url "$WAVECLS_TORCH_INDEX_URL")
fi
"${pip[@]}" install "${index_args[@]}" "torch==2.13.0"

target="."
[ -n "$extras" ] && target=".[$extras]"
"${pip[@]}" install -e "$target"
