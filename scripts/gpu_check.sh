#!/usr/bin/env bash
# One GPU, under 8 minutes: the GPU tests (tests/test_gpu.py), then the GPU bench grid
# (rnn, gru, lstm, gru_doc, janet x fp32, 16-mixed, bf16-mixed x batch 64, 256 x length 100, 1000
# x hidden 128, 1024), printing the grid's table last. Results go to $OUT (or ./gpu_check_out):
# tests.log, bench.log, bench/bench.csv, bench/scaling.csv, bench/table.txt, and mlflow.db when
# MLflow is installed there.
#
#   here, once:          bash scripts/gpu_check.sh --fetch-wheels
#                        (wheels of the pure-Python packages a bare GPU image lacks: hydra-core,
#                        omegaconf, antlr4, at the versions installed here, into .whl/)
#   on the GPU machine:  bash scripts/gpu_check.sh            (with .whl/ carried along)
#
# Uses `python3` (or $PYTHON), grubench from src/ (no install needed), the image's torch.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PURE=(hydra-core omegaconf antlr4-python3-runtime)

if [ "${1:-}" = "--fetch-wheels" ]; then
    specs=()
    for name in "${PURE[@]}"; do
        version=$($PY -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
        specs+=("$name${version:+==$version}")
    done
    $PY -m pip wheel -q --no-deps -w .whl "${specs[@]}" || exit 1
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    ls -l .whl
    exit 0
fi

OUT_DIR=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT_DIR"
started=$(date +%s)

if compgen -G ".whl/*.whl" > /dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu_check_site .whl/*.whl || echo "gpu_check: installing .whl/ failed"
    export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

# Preflight: the GPU, the versions, and what is missing (one line each).
$PY - <<'EOF'
import importlib, torch
print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"GPU {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NONE'}, "
      f"bf16 {torch.cuda.is_available() and torch.cuda.is_bf16_supported()}, "
      f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32} cudnn {torch.backends.cudnn.allow_tf32}")
for name in ("hydra", "omegaconf", "pytorch_lightning", "torchmetrics", "matplotlib", "tqdm", "sklearn", "mlflow"):
    try:
        importlib.import_module(name)
    except Exception as error:
        print(f"gpu_check: cannot import {name}: {type(error).__name__}: {error}")
EOF
if $PY -c "import mlflow" 2>/dev/null; then MLFLOW=true; else
    MLFLOW=false; echo "gpu_check: no MLflow here; the bench writes its CSV and table only"; fi

# 1. GPU tests (the repository's conftest imports MLflow, which a GPU image may lack: not needed here).
timeout 150 $PY -m pytest -q --noconftest -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT_DIR/tests.log"
tests_status=${PIPESTATUS[0]}

# 2. The GPU grid; cells left after budget_s are recorded as skipped, so the table always comes.
timeout 360 $PY -m grubench.bench grid=gpu budget_s=270 progress=false output_dir="$OUT_DIR/bench" \
    tracking.enabled=$MLFLOW tracking.uri="$OUT_DIR/mlflow.db" hydra.run.dir=/tmp/gpu_check_hydra \
    > "$OUT_DIR/bench.log" 2>&1
bench_status=$?
tail -n 5 "$OUT_DIR/bench.log"

echo
echo "gpu_check: tests exit $tests_status ($(tail -n 1 "$OUT_DIR/tests.log")), bench exit $bench_status," \
     "$(( $(date +%s) - started )) s"
if [ -f "$OUT_DIR/bench/table.txt" ]; then
    cat "$OUT_DIR/bench/table.txt"
else
    echo "gpu_check: no table; the end of bench.log:"; tail -n 30 "$OUT_DIR/bench.log"
fi
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
