#!/usr/bin/env bash
# Issue 15's one device call (docs/benchmarks.md, "Action heads on the sim rig"): the flow/FAST `gpu` tests in the
# background while bench/sim_heads.py records, trains the four heads at once, validates and tests.
#   rsync -a --delete --exclude .git --exclude tests/fixtures --exclude docs/screenshots --exclude whl --exclude gl \
#         /work/wt/x15/ /work/main/.devcarry/x15/     # + whl/ (mujoco 3.3.0, pyopengl, glfw, sqlalchemy, alembic,
#                                                     #   mako, av: cp312 wheels) and gl/ (libglvnd/libegl1 debs)
#   run: cd .devcarry/x15 && bash bench/sim_heads_gpu.sh --demos 300 ...      (carry .devcarry/x15)
# Two calls (what docs/benchmarks.md's second run did; the device returns at most 8 files of <= 16 MiB):
#   1. NO_GPU_TESTS=1 bash bench/sim_heads_gpu.sh --work /tmp/sh --bundle $OUT/b --stop-after train --demos 500 ...
#   2. carry call 1's $OUT/b, then: NO_GPU_TESTS=1 bash bench/sim_heads_gpu.sh --work /tmp/sh2 --eval-from <it> ...
# Locally (CPU smoke test, no set-up): PY=.venv/bin/python OUT=/tmp/o bash bench/sim_heads_gpu.sh --demos 2 ...
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/sim_heads_out}
PY=${PY:-python3}
mkdir -p "$OUT"
if command -v nvidia-smi >/dev/null 2>&1 && [ -d gl ] && [ -d whl ]; then  # the device machine only
    for f in gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    V=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    [ -f "$V" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$V
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
    nvidia-smi -L
else
    export PYTHONPATH=$PWD
fi
export MUJOCO_GL=egl PYOPENGL_PLATFORM=egl PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
echo "cores: $(nproc)"
if [ -z "${NO_GPU_TESTS:-}" ]; then
("$PY" -m pytest -q -p no:cacheprovider -m gpu tests/finetune/test_action_heads.py >"$OUT/gpu_tests.log" 2>&1
 echo "rc=$?" >>"$OUT/gpu_tests.log") &
fi
set -o pipefail
"$PY" bench/sim_heads.py --out "$OUT" "$@" 2>&1 | tee "$OUT/run.log" |
    grep -v --line-buffered -e '^{"event":"\(train\|start\|eval\|checkpoint\|done\)"' -e 'UserWarning' -e 'from_numpy'
rc=$?
wait
[ -f "$OUT/gpu_tests.log" ] && { echo "--- gpu tests"; tail -4 "$OUT/gpu_tests.log"; }
exit $rc
