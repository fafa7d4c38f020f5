#!/usr/bin/env bash
# Every GPU target of the project in one command that fits a 10-minute slot (docs/performance.md).
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--only a,b] [--total S] [--budget STEP=S ...]   # on the GPU machine
#   bash benchmarks/gpu_check.sh --tiny        # the same steps at toy sizes on the CPU (< 5 min on a quiet 2-core box)
#   bash benchmarks/gpu_check.sh --prepare     # here, with network: wheels into .whl/, photos into .gpu-data/
#
# Runs from the repository root (PYTHONPATH=.). Steps, in order, each under its own `timeout` (budget, seconds):
#   machine      20  nvidia-smi, torch/CUDA/cuDNN, GPU, CPU model + ISA flags, load          (gpu_steps.py machine)
#   install      30  installs only the missing packages, from the carried .whl/ (no network there)
#   sr3_eager   100  sr3_speed.py janspiry-16-128 bf16 eager: forward b1/b64, 100-step sampling b64, training b32
#   sr3_compiled 200 the same, torch.compile'd (one static graph per batch size)
#   metrics      45  PSNR+SSIM+consistency, LPIPS, Inception features at 256^2 (random-init standard networks)
#   realesrgan   40  realesrgan-x4plus 64->256 images/s
#   diffusers    40  a tiny pipeline through `diffusers:` (recorded "skipped: not available" without that method)
#   gpu_tests    60  the test suite's CUDA-marked tests (pytest -m gpu)
#   quality    rest  only if >= 150 s are left: small-preset SR3 + regression trained for what is left (at most
#                    300 s), then sr3_quality.py's held-out verdicts
# The whole run stops starting steps at --total seconds (540 by default: a 600 s command with a minute of margin).
# A step that fails or runs out of time is recorded with its error and the script goes on; the exit code is 1
# when any step failed or timed out.
#
# Results ($OUT, default ./gpu-out; three files, rewritten after every step so a killed run keeps what it did):
#   gpu_check.json  the machine and every step: status, seconds, budget, its figures (with anchors and targets)
#   gpu_check.txt   the summary table (also printed last)
#   gpu_check.log   every step's output
set -u

cd "$(dirname "$0")/.."
TINY=0
PREPARE=0
ONLY=""
TOTAL=""
OUT_DIR="${OUT:-./gpu-out}"
declare -A BUDGET=([machine]=20 [install]=30 [sr3_eager]=100 [sr3_compiled]=200 [metrics]=45 [realesrgan]=40
                   [diffusers]=40 [gpu_tests]=60 [quality]=400)
declare -A OVERRIDE=()
QUALITY_MIN=150      # the quality step starts only with this many seconds left
QUALITY_TRAIN_MAX=300

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) TINY=1 ;;
    --prepare) PREPARE=1 ;;
    --out) OUT_DIR="$2"; shift ;;
    --only) ONLY=",$2," ; shift ;;
    --total) TOTAL="$2"; shift ;;
    --budget) OVERRIDE[${2%%=*}]="${2#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python3}"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if [ "$PREPARE" = 1 ]; then
  # Wheels of the packages the GPU machine lacks (pure-Python ones: any platform) and a copy of the photos that
  # sr3_quality.py splits, so nothing outside the repository is needed there. Both folders are git-ignored;
  # name them in the device tool's `carry` (".whl", ".gpu-data").
  mkdir -p .whl .gpu-data
  for dist in lpips clean-fid torch-fidelity diffusers importlib-metadata; do
    ver=$("$PY" -c "from importlib.metadata import version; print(version('$dist'))" 2>/dev/null)
    spec="$dist${ver:+==$ver}"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "$spec" || echo "prepare: $spec failed"
  done
  src="${PHOTOS:-../shared/data/photos}"
  if [ -d "$src" ]; then
    "$PY" - "$src" .gpu-data/photos <<'EOF'
import sys
from pathlib import Path

from PIL import Image

from evalsuite.datasets import IMAGE_EXTENSIONS

src, dest = Path(sys.argv[1]), Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)[:54]  # 6 held out (every 9th)
for p in files:  # long side <= 512 px, JPEG q95: a few MB in all, well inside the 64 MiB that travels
    img = Image.open(p).convert("RGB")
    img.thumbnail((512, 512), Image.LANCZOS)
    img.save(dest / (p.relative_to(src).as_posix().replace("/", "__").rsplit(".", 1)[0] + ".jpg"), quality=95)
print(f"prepare: {len(files)} photos -> {dest}")
EOF
  else
    echo "prepare: no photo folder at $src (set PHOTOS=DIR); the quality step will use scikit-image's photos"
  fi
  du -sh .whl .gpu-data
  exit 0
fi

if [ "$TINY" = 1 ]; then
  # Caps, not expectations: on a quiet 2-core CPU the whole --tiny run takes 3-4 min; a loaded one is far slower.
  BUDGET=([machine]=30 [install]=30 [sr3_eager]=90 [sr3_compiled]=180 [metrics]=120 [realesrgan]=90
          [diffusers]=90 [gpu_tests]=150 [quality]=240)
  QUALITY_MIN=90
  QUALITY_TRAIN_MAX=20
  TOTAL="${TOTAL:-900}"
  DEV=(--device cpu)
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # toy sizes: one thread is fastest on a shared machine
else
  TOTAL="${TOTAL:-540}"
  DEV=(--device auto)
fi
for k in "${!OVERRIDE[@]}"; do BUDGET[$k]="${OVERRIDE[$k]}"; done

mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")"
COMBINED="$OUT_DIR/gpu_check.json"
LOG="$OUT_DIR/gpu_check.log"
rm -f "$COMBINED" "$OUT_DIR/gpu_check.txt"
: > "$LOG"
START=$(date +%s)
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
FAILED=0
SITE="$WORK/site"

selected() { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]]; }
left() { echo $(( TOTAL - ($(date +%s) - START) )); }

record() {  # NAME STATUS RC SECONDS BUDGET [REASON]
  "$PY" benchmarks/gpu_steps.py record "$1" --combined "$COMBINED" --status "$2" --rc "$3" --seconds "$4" \
    --budget "$5" --result "$WORK/$1.json" --log "$WORK/$1.log" ${6:+--reason "$6"} --tiny "$TINY" \
    --total-budget-s "$TOTAL" --started "$STARTED" --elapsed-s $(( $(date +%s) - START )) \
    || echo "gpu_check: could not record step $1" >&2
}

run_step() {  # NAME COMMAND...: run under the step's budget (cut to what is left), record the outcome
  local name="$1"; shift
  selected "$name" || return 0
  local budget="${BUDGET[$name]}" rest
  rest=$(left)
  if [ "$rest" -lt 5 ]; then
    record "$name" skipped 0 0 "$budget" "no time left of the --total $TOTAL s"
    echo "== $name: skipped (no time left)"
    return 0
  fi
  [ "$budget" -gt "$rest" ] && budget=$rest
  echo "== $name (budget ${budget} s)" | tee -a "$LOG"
  local t0 rc status
  t0=$(date +%s)
  timeout -k 10 "$budget" "$@" > "$WORK/$name.log" 2>&1
  rc=$?
  local secs=$(( $(date +%s) - t0 ))
  case $rc in
    0) status=ok ;;
    124|137) status=timeout; FAILED=1 ;;
    *) status=error; FAILED=1 ;;
  esac
  cat "$WORK/$name.log" >> "$LOG"
  tail -n 8 "$WORK/$name.log"
  local reason=""
  [ "$status" = timeout ] && reason="over its budget of $budget s (killed by timeout)"
  [ "$status" = error ] && reason="exit code $rc: $(grep -v '^\s*$' "$WORK/$name.log" | tail -n 1 | cut -c1-300)"
  record "$name" "$status" "$rc" "$secs" "$budget" "$reason"
  echo "== $name: $status in ${secs} s" | tee -a "$LOG"
}

if [ "$TINY" = 1 ]; then
  SPEED=(benchmarks/sr3_speed.py --device cpu --preset tiny --size 32 --fwd-batches 1,2 --sample-batch 2
         --sample-steps 3 --train-batch 2 --repeats 2 --warmup 1)
  # Tracing and graph capture without a C++ build; one batch size, so forward and sampling share one graph.
  COMPILE=(--compile --compile-backend aot_eager --fwd-batches 2)
  TESTS=(tests/test_gpu_paths.py)
else
  SPEED=(benchmarks/sr3_speed.py --device auto --preset janspiry-16-128 --fwd-batches 1,64 --sample-batch 64
         --sample-steps 100 --train-batch 32 --repeats 3 --warmup 2)
  COMPILE=(--compile)
  # Only the files that hold CUDA-marked tests: collecting the others would import packages the GPU machine
  # lacks (streamlit, sqlalchemy, playwright) and stop pytest with collection errors.
  mapfile -t TESTS < <(grep -l "mark.gpu" tests/test_*.py)
fi
TINYFLAG=()
[ "$TINY" = 1 ] && TINYFLAG=(--tiny)

run_step machine "$PY" benchmarks/gpu_steps.py machine --json "$WORK/machine.json"
run_step install "$PY" benchmarks/gpu_steps.py install --wheels .whl --site "$SITE" --json "$WORK/install.json"
[ -d "$SITE" ] && export PYTHONPATH="$PYTHONPATH:$SITE"
run_step sr3_eager "$PY" "${SPEED[@]}" --json "$WORK/sr3_eager.json"
run_step sr3_compiled "$PY" "${SPEED[@]}" "${COMPILE[@]}" --json "$WORK/sr3_compiled.json"
run_step metrics "$PY" benchmarks/gpu_steps.py metrics "${DEV[@]}" "${TINYFLAG[@]}" --json "$WORK/metrics.json"
run_step realesrgan "$PY" benchmarks/gpu_steps.py realesrgan "${DEV[@]}" "${TINYFLAG[@]}" --json "$WORK/realesrgan.json"
run_step diffusers "$PY" benchmarks/gpu_steps.py diffusers "${DEV[@]}" "${TINYFLAG[@]}" --json "$WORK/diffusers.json"
run_step gpu_tests "$PY" benchmarks/gpu_steps.py pytest --json "$WORK/gpu_tests.json" -- -m gpu "${TESTS[@]}"
if selected quality; then
  rest=$(left)
  if [ "$rest" -lt "$QUALITY_MIN" ]; then
    record quality skipped 0 0 0 "only $rest s left of --total $TOTAL (needs $QUALITY_MIN): run --only quality"
    echo "== quality: skipped ($rest s left)"
  else
    # Training gets what is left after about a third kept for calibration, the benchmark and the verdicts.
    train=$(( (rest - 60) * 2 / 3 )); [ "$train" -gt "$QUALITY_TRAIN_MAX" ] && train=$QUALITY_TRAIN_MAX
    BUDGET[quality]=$(( rest - 5 ))
    data=.gpu-data/photos; [ -d "$data" ] || data=""
    run_step quality "$PY" benchmarks/gpu_steps.py quality "${DEV[@]}" "${TINYFLAG[@]}" --seconds "$train" \
      ${data:+--data "$data"} --work "$WORK/quality" --json "$WORK/quality.json"
  fi
fi

echo
"$PY" benchmarks/gpu_steps.py summary "$COMBINED" | tee -a "$LOG"
rm -rf "$WORK"
exit $FAILED
