#!/usr/bin/env bash
# One GPU session in one command of at most 8 minutes (SSGAN_SESSION_BUDGET seconds, default 480):
# the stages below run in priority order, each under its own time cap (cut to the time left), and
# each leaves its JSON in bench/results/<stage>-<device>-<date>.json (and $OUT, when set) the
# moment it ends, timed out or not; a one-screen summary comes last.
#
#   bash bench/gpu_session.sh                       # on the GPU machine (give the call ~9 minutes)
#   bash bench/gpu_session.sh --dry-run [--out DIR] # every stage on CPU at toy shapes; never writes
#                                                   # bench/results/ (default: a new temp folder);
#                                                   # budget and caps x SSGAN_DRY_CAP_FACTOR (4)
#   bash bench/gpu_session.sh --list                # the stages and their caps
#   bash bench/gpu_session.sh --stages learning,metrics,invert   # only these stages (any mode above;
#                                                   # they run in the script's order, with the budget)
#
# A stage is one line: `stage NAME CAP_SECONDS COMMAND...`; the command is run as
# `COMMAND --json FILE` (plus `--dry-run` in a dry run), must write FILE (rewriting it as parts
# finish, so a stage stopped by its cap keeps what it completed), and exit 0 when all is well.
# At its cap it gets SIGINT, then SIGKILL 10 s later; bench/session.py then marks the JSON
# (status ok | failed | timed_out | skipped, wall time, log tail) and copies it to $OUT.
# $OUT brings back at most 8 files: one per stage, nothing else is written there.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
PY=${PYTHON:-python3}
BUDGET=${SSGAN_SESSION_BUDGET:-480}
MIN_STAGE=30  # seconds: a stage with less time left than this is skipped
mode=gpu out= scale=1 only= selecting=
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) mode=dry scale=${SSGAN_DRY_CAP_FACTOR:-4} ;;
        --list) mode=list ;;
        --out) out=$2; shift ;;
        --stages) only=${2:-} selecting=1; shift ;;
        *) echo "usage: $0 [--dry-run [--out DIR] | --list] [--stages NAME[,NAME...]]" >&2; exit 2 ;;
    esac
    shift
done

ensure_ssgan() {  # ssgan.kernels importable: as installed, else installed offline, else from source
    "$PY" -c "import ssgan.kernels" 2>/dev/null && return 0
    echo "installing ssgan offline (pip --no-index --no-deps --no-build-isolation -e .)"
    "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . &&
        "$PY" -c "import ssgan.kernels" && return 0
    echo "pip could not install ssgan: importing it from the source tree instead"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c "import ssgan.kernels"
}

names=() known=() collecting=
BUDGET=$((BUDGET * scale)) t0=$SECONDS
stage() {  # stage NAME CAP_SECONDS COMMAND...
    local name=$1 cap=$(($2 * scale)); shift 2
    if [ -n "$collecting" ]; then known+=("$name"); return; fi
    [ -z "$selecting" ] || [[ ",$only," == *",$name,"* ]] || return 0  # not selected by --stages
    names+=("$name")
    if [ "$mode" = list ]; then printf '%-12s %4s s  %s\n' "$name" "$cap" "$*"; return; fi
    local file="$results/$name$suffix.json" log="$logs/$name.log"
    local left=$((BUDGET - (SECONDS - t0) - 20))  # 20 s: SIGKILL grace and the summary
    local limit=$((cap < left ? cap : left)) dry=() copy=() start=$SECONDS rc
    [ "$mode" = dry ] && dry=(--dry-run)
    [ "$mode" = gpu ] && [ -n "${OUT:-}" ] && copy=(--copy-to "$OUT")
    rm -f "$file"
    if [ "$limit" -lt "$MIN_STAGE" ]; then
        echo "== $name: skipped ($((left > 0 ? left : 0)) s left, cap $cap s)"
        "$PY" -m bench.session finish "$name" "$file" --cap "$cap" --skipped "${dry[@]}" "${copy[@]}"
        return
    fi
    echo "== $name (cap ${limit} s): $* ${dry[*]}"
    timeout --signal=INT --kill-after=10 "$limit" "$@" --json "$file" "${dry[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    "$PY" -m bench.session finish "$name" "$file" --rc "$rc" --cap "$limit" --wall $((SECONDS - start)) \
        --log "$log" "${dry[@]}" "${copy[@]}"
}

stages() {  # priority order; "if time is left" stages go last and are skipped when it is not
    stage env          90  "$PY" -m bench.env
    stage kernels     140  "$PY" -m bench.kernels --repeats 20 --warmup 5 --class-sweep 5,13,32,64
    stage train_256   170  "$PY" -m bench.train --resolutions 256 --profile
    stage cuda_tests   90  "$PY" -m bench.cuda_tests
    stage train_512   150  "$PY" -m bench.train --resolutions 512
    stage learning    150  "$PY" -m bench.learning --kimg 4 --no-seed-spread
    stage metrics     120  "$PY" -m bench.metrics --n 5000 --check-n 1000
    stage invert      120  "$PY" -m bench.invert --resolutions 512 --steps 100
}

collecting=1 && stages && collecting=
for name in ${only//,/ }; do
    [[ " ${known[*]} " == *" $name "* ]] || {
        echo "--stages: no stage '$name'; the stages are: ${known[*]}" >&2; exit 2; }
done
[ -z "$selecting" ] || [ -n "${only//,/}" ] || { echo "--stages: give at least one stage name" >&2; exit 2; }
if [ "$mode" = list ]; then stages; exit 0; fi
ensure_ssgan || { echo "ssgan.kernels cannot be imported: nothing was run" >&2; exit 1; }
if [ "$mode" = dry ]; then
    # CPU only, even on a GPU machine; Triton kernels under the interpreter
    export CUDA_VISIBLE_DEVICES="" TRITON_INTERPRET=1
    results=${out:-$(mktemp -d)} suffix=-dry-run
else
    "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || {
        echo "no CUDA device: the GPU session measures nothing without one (use --dry-run)" >&2; exit 2; }
    device=$("$PY" -c "from bench.kernels import slug; import torch; print(slug(torch.cuda.get_device_name()))")
    results=bench/results suffix="-$device-$(date +%F)"
fi
mkdir -p "$results" && logs=$(mktemp -d) || exit 1
trap '"$PY" -m bench.session summary "$results" --suffix="$suffix" "${names[@]}"' EXIT
stages
