#!/usr/bin/env bash
# The GPU benchmarks of issue 3, in one command: training images/s of ss.fit's step vs a
# hand-written Flax NNX step vs PyTorch (CUDA), all on the same device and in the same process.
#
#   bash benchmarks/gpu.sh            # on a GPU machine: about 4-8 minutes on an H100
#   bash benchmarks/gpu.sh --smoke    # tiny sizes, anywhere (CPU included): well under 2 minutes
#
# Runs
#   1. the talk's CNN at 250x250x3, batch 32, SGD          (benchmarks/train_cnn.py --size 250)
#   2. ResNet-18, 10 classes, 224x224, batch 128, SGD 0.9  (benchmarks/train_resnet.py)
# each under a hard timeout, writes each JSON to $OUT if set (else benchmarks/results/; in
# --smoke mode a temporary folder), a log beside them, and prints a short summary. A
# benchmark that fails or times out is reported and the next one still runs; the exit status
# is the number of benchmarks that failed.
#
# Environment: JAX with CUDA, Flax, optax, jaxtyping, PyTorch; beartype may come as a wheel in
# .whl/ (fetched beforehand where pip works: `python3 -m pip download --no-deps
# --only-binary=:all: -d .whl beartype==0.23.1`). shapesafe is installed with
# `pip install --no-deps -e .` when it is not importable, else taken from this checkout.
# PYTHON picks the interpreter (default python3). JAX is held to half the GPU's memory
# (XLA_PYTHON_CLIENT_MEM_FRACTION, unless set) so PyTorch, in the same process, has room.

set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
SMOKE=0
case "${1:-}" in
  --smoke) SMOKE=1 ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu.sh [--smoke]" >&2; exit 2 ;;
esac

if [ -n "${OUT:-}" ]; then DEST=$OUT
elif [ "$SMOKE" = 1 ]; then DEST=$(mktemp -d)
else DEST=$ROOT/benchmarks/results
fi
mkdir -p "$DEST"
LOG=$DEST/gpu_log.txt
: >"$LOG"
say() { echo "$@" | tee -a "$LOG"; }

# -- dependencies (each step does nothing when what it provides is already importable) ------
importable() { (cd / && "$PY" -c "import $1" >/dev/null 2>&1); }
if ! importable beartype && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/shapesafe-site .whl/*.whl \
    >>"$LOG" 2>&1 && export PYTHONPATH=/tmp/shapesafe-site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! importable shapesafe; then  # offline: no build isolation, no index (fails fast rather than waiting on one)
  timeout 60 "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . >>"$LOG" 2>&1 \
    || say "pip install -e . did not work here; using the checkout through PYTHONPATH"
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}  # the fallback; harmless after an install
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}
export PYTHONUNBUFFERED=1
if ! importable shapesafe || ! importable torch; then
  say "missing: shapesafe or torch is not importable with $PY; see $LOG"
  exit 1
fi
"$PY" - >>"$LOG" 2>&1 <<'EOF'
import jax, torch
print("jax", jax.__version__, jax.devices(), "| torch", torch.__version__,
      "cuda" if torch.cuda.is_available() else "cpu",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
EOF
tail -n 1 "$LOG"
if [ "$SMOKE" = 0 ] && ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
  say "warning: JAX sees no GPU; at these sizes the benchmarks will likely time out (try --smoke)"
fi

# -- the benchmarks ------------------------------------------------------------------------
if [ "$SMOKE" = 1 ]; then
  # tiny and quick to compile: correctness of the plumbing, not speed
  export XLA_FLAGS=${XLA_FLAGS:---xla_backend_optimization_level=0}
  CNN_ARGS=(--size 32 --batch 4 --rounds 1 --repeats 1 --warmup 0)
  RESNET_ARGS=(--size 32 --batch 4 --blocks 1 --rounds 1 --repeats 1 --warmup 0)
  CNN_LIMIT=90; RESNET_LIMIT=90
else
  # steps take milliseconds on a GPU: compilation (with autotuning) dominates, not these
  CNN_ARGS=(--size 250 --batch 32 --rounds 10 --repeats 10 --warmup 5)
  RESNET_ARGS=(--size 224 --batch 128 --rounds 10 --repeats 10 --warmup 5)
  CNN_LIMIT=180; RESNET_LIMIT=300
fi

FAILED=0
run() {  # run NAME LIMIT SCRIPT ARGS...
  local name=$1 limit=$2 script=$3; shift 3
  say "== $name: $script $* (limit ${limit}s)"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$PY" "benchmarks/$script" "$@" >"$DEST/$name.json" 2>>"$LOG"
  local rc=$?
  if [ $rc -ne 0 ]; then
    FAILED=$((FAILED + 1))
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then say "   $name: timed out after ${limit}s"
    else say "   $name: failed (exit $rc); see $LOG"
    fi
  else
    say "   $name: done in $((SECONDS - t0))s"
  fi
}
run train_cnn "$CNN_LIMIT" train_cnn.py "${CNN_ARGS[@]}"
run train_resnet "$RESNET_LIMIT" train_resnet.py "${RESNET_ARGS[@]}"

# -- summary -------------------------------------------------------------------------------
"$PY" - "$DEST" <<'EOF' | tee -a "$LOG"
import json, pathlib, sys
dest = pathlib.Path(sys.argv[1])
for name in ("train_cnn", "train_resnet"):
    try:
        r = json.loads((dest / f"{name}.json").read_text())
    except (OSError, ValueError):
        print(f"{name}: no result")
        continue
    p, dev = r["parameters"], r["device"]
    torch_dev = r.get("torch_device") or (r.get("torch") or {}).get("device_name") or (r.get("torch") or {}).get("device")
    print(f"{name}: {p['size']}x{p['size']}, batch {p['batch']}; JAX on {dev['platform']} ({dev['device_kind']}), "
          f"PyTorch on {torch_dev}")
    print("   images/s  " + "  ".join(f"{k} {v:.1f}" for k, v in r["images_per_s"].items()))
    print("   vs flax   " + "  ".join(f"{k} {v:.2f}" for k, v in r["ratio_vs_flax"].items()))
    if r.get("ratio_vs_torch"):
        print("   vs torch  " + "  ".join(f"{k} {v:.2f}" for k, v in r["ratio_vs_torch"].items()))
    print("   first loss " + "  ".join(f"{k} {v:.5f}" for k, v in r["first_loss"].items()))
print(f"results in {dest}")
EOF
exit $FAILED
