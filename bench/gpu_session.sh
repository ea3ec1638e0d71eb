#!/usr/bin/env bash
# Everything a GPU session runs, in stages that each fit one 10-minute device call:
#   bash bench/gpu_session.sh parity   # pytest -m cuda: GPU parity of every kernel (paper shapes)
#   bash bench/gpu_session.sh kernels  # bench.kernels (--check first) and bench.render_ops
#   bash bench/gpu_session.sh train    # bench.train at 256 and 512 px, batch 16
# Results go to bench/results/ (commit them) and, when $OUT is set, are copied there too.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python3 -c "import ssgan.kernels" 2>/dev/null ||
    pip install --no-deps --no-build-isolation -q -e . || exit 1
device=$(python3 -c "import torch; print(torch.cuda.get_device_name().replace(' ', '-'))" 2>/dev/null) || {
    echo "no CUDA device: these stages only run on a GPU; nothing was measured" >&2; exit 2; }
mkdir -p bench/results
date=$(date +%F)
case "${1:-}" in
    parity)  python3 -m pytest -q -m cuda tests bench/test_bench_kernels.py 2>&1 | tee "bench/results/parity-$device-$date.log" ;;
    kernels) python3 -m bench.kernels --check --json "bench/results/kernels-$device-$date.json" &&
             python3 -m bench.render_ops --dtype both --json "bench/results/render_ops-$device-$date.json" ;;
    train)   python3 -m bench.train --json "bench/results/train-$device-$date.json" ;;
    *)       echo "usage: $0 parity|kernels|train" >&2; exit 2 ;;
esac
status=$?
if [ -n "${OUT:-}" ]; then cp bench/results/*"$device-$date"* "$OUT"/ 2>/dev/null; fi
exit $status
