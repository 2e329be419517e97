#!/usr/bin/env bash
# One prepared GPU check (issue 19): environment, training-step throughput/MFU/memory,
# batched beam search vs ESPnet's BatchBeamSearch, data-loader throughput. At most ~8 minutes
# on a fresh H200; every section has its own timeout and a failing one does not stop the rest.
#
#   bash benchmarks/device_check.sh OUT_DIR [--device cuda|cpu] [--tiny]
#
# Writes OUT_DIR/device_check.json (every section: command line, exit status, wall time,
# results or error), OUT_DIR/device_check.md (tables) and OUT_DIR/device_check.log (all output).
# Missing Python packages are installed from wheels in .whl/ (benchmarks/device_wheels.sh fills
# it; carry ".whl" with the device tool) into a private folder put on PYTHONPATH.
# --tiny: CPU-sized smoke run for CI (one small model, 1 step, beam 3 on 4 short utterances,
# loader with 0 and 1 workers on a 4-utterance corpus). See benchmarks/RESULTS.md.
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR [--device cuda|cpu] [--tiny] [--corpus DIR]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT_DIR=$1; shift
DEVICE=cuda; TINY=0; CORPUS=""
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=${2:?}; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --corpus) CORPUS=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")
LOG=$OUT_DIR/device_check.log
: >"$LOG"
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
echo "device_check: device $DEVICE tiny $TINY out $OUT_DIR work $WORK python $PY" | tee -a "$LOG"

# run_section NAME TIMEOUT_S RESULT_JSON CMD...: run with a timeout, log, record meta
run_section() {
  local name=$1 limit=$2 result=$3; shift 3
  local t0 t1 rc
  echo "== [$name] $(date -u +%T) (timeout ${limit}s): $*" | tee -a "$LOG"
  t0=$(date +%s.%N)
  set +e
  timeout -k 10 "$limit" "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  set -e
  t1=$(date +%s.%N)
  cat "$WORK/$name.log" >>"$LOG"
  tail -n 5 "$WORK/$name.log"
  "$PY" - "$WORK/$name.meta.json" "$name" "$rc" "$t0" "$t1" "$limit" "$result" "$@" <<'PYEOF'
import json, sys
path, name, rc, t0, t1, limit, result, *cmd = sys.argv[1:]
json.dump({"name": name, "command": " ".join(cmd), "rc": int(rc),
           "wall_s": float(t1) - float(t0), "timeout_s": float(limit),
           "timed_out": int(rc) in (124, 137), "result_file": result}, open(path, "w"))
PYEOF
  echo "== [$name] rc $rc" | tee -a "$LOG"
}

# --- sizes (GPU: timeouts 30 + 40 + 50 + 90 + 120 + 95 + 60 = 485 s at most) ---
if [ "$TINY" = 1 ]; then
  MODELS="synth_grid"; VARIANTS="fp32-eager"; TRAIN_ARGS="--steps 1 --batch 1 --frames 12 --matmul-size 256"
  TRAIN_T="synth_grid:120"
  DEC_ARGS="--synthetic 2 4 --espnet-utterances 2 --beams 3 --frames-range 12 24 --repeats 1"
  DEC_T=150; N_CORPUS=4; CORPUS_T=120; LOADER_ARGS="--workers 0 1 --max-seconds 3"; LOADER_T=90
  THREADS=1
else
  MODELS="synth_grid base large"
  if [ "$DEVICE" = cpu ]; then VARIANTS="fp32-eager bf16-autocast compile"
  else VARIANTS="fp32-eager bf16-autocast bf16+tf32+compile"; fi
  TRAIN_ARGS="--steps 20 --time-budget 5 --batch 16 --frames 150"
  TRAIN_T="synth_grid:50 base:90 large:120"
  DEC_ARGS="--synthetic 32 256 1321 --espnet-utterances 16 --beams 10 40 --repeats 1 --batch-size 256"
  DEC_T=95; N_CORPUS=200; CORPUS_T=40
  LOADER_ARGS="--workers 0 2 8 --max-seconds 5 --repeat 4"; LOADER_T=60
  THREADS=$(nproc); [ "$THREADS" -le 8 ] || THREADS=8
fi

# --- 1. environment ---------------------------------------------------------------------
SITE=$WORK/site
env_check() {
  local missing
  missing=$("$PY" - <<'PYEOF'
import importlib.util
pairs = {"hydra": "hydra-core", "omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime",
         "av": "av", "espnet": "espnet", "espeakng_loader": "espeakng-loader",
         "sentencepiece": "sentencepiece", "pytorch_lightning": "pytorch-lightning"}
print(" ".join(d for m, d in pairs.items() if importlib.util.find_spec(m) is None))
PYEOF
)
  echo "missing before install:${missing:- none}"
  if [ -n "$missing" ]; then
    if [ -d .whl ]; then
      local wheels=""
      for dist in $missing; do
        wheels="$wheels $(ls .whl/"$(echo "$dist" | tr - _)"-*.whl 2>/dev/null | head -1)"
      done
      echo "installing from .whl:$wheels"
      # shellcheck disable=SC2086
      "$PY" -m pip install -q --no-index --find-links .whl --no-deps --no-compile \
        --no-cache-dir --target "$SITE" $wheels || echo "pip install failed"
    else
      echo "no .whl folder: run benchmarks/device_wheels.sh first and carry .whl"
    fi
  fi
  export PYTHONPATH="$SITE:$PYTHONPATH"
  "$PY" - "$WORK/env.json" "$missing" <<'PYEOF'
import importlib, json, platform, sys
import torch
out = {"python": sys.version.split()[0], "platform": platform.platform(),
       "torch": torch.__version__, "cuda": torch.version.cuda,
       "cuda_available": torch.cuda.is_available(),
       "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
       "cpus": __import__("os").cpu_count(), "installed_from_whl": sys.argv[2].split(),
       "packages": {}}
import importlib.metadata as md
import importlib.util
for mod, dist in [("hydra", "hydra-core"), ("omegaconf", "omegaconf"),
                  ("pytorch_lightning", "pytorch-lightning"), ("sentencepiece", "sentencepiece"),
                  ("av", "av"), ("espnet", "espnet"), ("espeakng_loader", "espeakng-loader"),
                  ("triton", "triton"), ("numpy", "numpy")]:
    try:  # metadata, not an import: quick
        found = importlib.util.find_spec(mod) is not None
        out["packages"][dist] = md.version(dist) if found else "MISSING"
    except Exception as e:  # noqa: BLE001
        out["packages"][dist] = f"MISSING: {e!r}"
print(json.dumps(out, indent=1))
json.dump(out, open(sys.argv[1], "w"), indent=1)
PYEOF
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv || true
}
export -f env_check
export PY WORK SITE
run_section env 30 "$WORK/env.json" bash -c env_check  # see env_check above
export PYTHONPATH="$SITE:$PYTHONPATH"

# --- 2. synthetic corpus (for the loader) -------------------------------------------------
if [ -z "$CORPUS" ]; then
  CORPUS=$WORK/corpus
  run_section corpus "$CORPUS_T" "" "$PY" -m avsr.data.synthetic --out "$CORPUS" \
    --train "$N_CORPUS" --val 0 --test 0 --domain grid --workers "$(nproc)" --quiet
fi

# --- 3. training step ---------------------------------------------------------------------
for pair in $TRAIN_T; do
  model=${pair%%:*}; limit=${pair#*:}
  # shellcheck disable=SC2086
  run_section "train_$model" "$limit" "$WORK/train_$model.json" "$PY" \
    benchmarks/train_throughput.py --models "$model" --variants $VARIANTS $TRAIN_ARGS \
    --device "$DEVICE" --threads "$THREADS" --json "$WORK/train_$model.json"
done

# --- 4. beam search vs ESPnet -------------------------------------------------------------
# shellcheck disable=SC2086
run_section decode "$DEC_T" "$WORK/decode.json" "$PY" benchmarks/decode.py $DEC_ARGS \
  --device "$DEVICE" --threads "$THREADS" --json "$WORK/decode.json"

# --- 5. data loader -----------------------------------------------------------------------
# shellcheck disable=SC2086
# both places of the augmentation: float crops from the workers (cpu) and uint8 batches with
# the batched augmentation on this device after the transfer (data.augment_on=device)
run_section loader "$LOADER_T" "$WORK/loader.json" "$PY" benchmarks/loader_throughput.py \
  --root "$CORPUS" $LOADER_ARGS --augment cpu device --augment-device "$DEVICE" \
  --json "$WORK/loader.json"

# --- report -------------------------------------------------------------------------------
"$PY" benchmarks/device_report.py "$WORK" "$OUT_DIR" --device "$DEVICE" --tiny "$TINY" \
  --total-s $(( $(date +%s) - START )) 2>&1 | tee -a "$LOG"
rm -rf "$WORK"
echo "device_check: done in $(( $(date +%s) - START )) s; $OUT_DIR/device_check.{json,md,log}"
