#!/usr/bin/env bash
# The GPU path end to end, in at most 5 minutes of one GPU (docs/gpu.md):
#   1. tests/test_gpu.py
#   2. the main command, python -m grubench +model=gru trainer=gpu, in 32-true, 16-mixed and
#      bf16-mixed, recorded in MLflow with the dtype that actually ran
#   3. the harness against a plain PyTorch loop on the GPU (python -m grubench.bench.overhead)
#   4. a short GPU bench grid (grid=gpu_check: cuDNN rnn, gru, lstm and two cell loops,
#      H 128 and 1024, T 100 and 1000), cut by a time budget
# Results go to $OUT (or ./gpu_check_out), packed: check-summary.txt (the numbers to read),
# check-logs.tar.gz, check-mlflow.tar.gz (the store, checkpoints left out), check-bench.tar.gz.
#
# Written for a GPU machine without network access that has torch and Lightning but not Hydra,
# OmegaConf or MLflow: their wheels are fetched beforehand and copied along with the tree.
#
#   with PyPI access, once:  bash scripts/gpu_check.sh --fetch-wheels
#                        (wheels of every package grubench imports that such a machine lacks:
#                        Hydra, OmegaConf, MLflow and theirs; for Python 3.12, into .whl/)
#   on the GPU machine:  bash scripts/gpu_check.sh               (with .whl/ copied along)
#                        bash scripts/reproduce.sh full --budget 360   (the second command)
#   anywhere, no GPU:    bash scripts/gpu_check.sh --rehearse
#                        (both commands' steps at toy size on the CPU, into the same $OUT
#                        file names: check-* and full-*; the study one job at a time, 20 s)
#
# Uses `python3` (or $PYTHON); grubench runs from src/ when it is not installed.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=gpu
case "${1:-}" in
  "") ;;
  --fetch-wheels) mode=fetch ;;
  --rehearse) mode=toy ;;
  *) echo "usage: bash scripts/gpu_check.sh [--fetch-wheels | --rehearse]" >&2; exit 2 ;;
esac

# What grubench imports (a run, a sweep with the pack launcher, the report) that a GPU machine
# with only torch and Lightning lacks, at the versions installed where --fetch-wheels runs.
WHEELS=(hydra-core omegaconf antlr4-python3-runtime hydra-joblib-launcher
        mlflow mlflow-skinny mlflow-tracing SQLAlchemy alembic Mako sqlparse cachetools
        databricks-sdk google-auth pyasn1 pyasn1_modules cryptography cffi pycparser
        fastapi starlette pydantic pydantic_core annotated-types typing-inspection importlib_metadata
        opentelemetry-api opentelemetry-sdk opentelemetry-proto opentelemetry-semantic-conventions
        optuna colorlog chardet mnist1d aeon Deprecated)
SDIST_ONLY=(antlr4-python3-runtime)   # no wheel on PyPI: built from its source (pure Python)

if [ "$mode" = fetch ]; then
  PY=${PYTHON:-python3}
  mkdir -p .whl
  grep -qx '/.whl/' "$(git rev-parse --git-path info/exclude)" 2>/dev/null \
    || echo '/.whl/' >> "$(git rev-parse --git-path info/exclude)"
  binary=() built=()
  shown=$($PY -m pip show "${WHEELS[@]}" 2>/dev/null | tr 'A-Z' 'a-z' | sed -n 's/^name: //p; s/^version: //p' | paste - -)
  for name in "${WHEELS[@]}"; do
    key=$(echo "$name" | tr 'A-Z_' 'a-z-')
    version=$(echo "$shown" | tr '_' '-' | awk -v n="$key" '$1 == n {print $2}')
    [ -n "$version" ] || { echo "gpu_check: $name is not installed here" >&2; exit 1; }
    normalized=$(echo "$name" | tr 'A-Z-' 'a-z_')
    ls .whl | tr 'A-Z' 'a-z' | grep -q "^${normalized}-${version}-" && continue   # fetched before
    if [[ " ${SDIST_ONLY[*]} " == *" $name "* ]]; then built+=("$name==$version"); else binary+=("$name==$version"); fi
  done
  platforms=()
  for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
    platforms+=(--platform "${p}_x86_64"); done
  if ((${#binary[@]})); then
    $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      "${platforms[@]}" -d .whl "${binary[@]}" || exit 1
  fi
  if ((${#built[@]})); then $PY -m pip wheel -q --no-deps -w .whl "${built[@]}" || exit 1; fi
  echo "gpu_check: $(ls .whl/*.whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/; with the working tree:" \
       "$(( ($(du -sb .whl | cut -f1) + $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)) / 1048576 )) MiB of 64"
  exit 0
fi

OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
export OUT
source scripts/gpu_env.sh
started=$SECONDS
work=$(mktemp -d /tmp/gpu_check.XXXXXX)
logs=$work/logs
mkdir -p "$logs"
export MLFLOW_TRACKING_URI=sqlite:///$work/mlflow.db
if [ "$mode" = gpu ]; then
  trainer=gpu toy=() overhead=(trainer=gpu) grid=(grid=gpu_check) grid_budget=120 limit=280
else  # toy size on the CPU
  trainer=cpu toy=(trainer.max_epochs=1 trainer.limit_train_batches=5 trainer.limit_val_batches=2
                   trainer.limit_test_batches=2 dataset.limit=320 model.hidden_size=16)
  overhead=(trainer=cpu trainer.limit_train_batches=10 model.hidden_size=16 --rounds 1 --skip 2) grid=(grid=tiny) grid_budget=10 limit=100
fi
left() { echo $(( limit - (SECONDS - started) )); }

# 0. What this machine is (beside the tests, which start at the same time).
$PY - > "$logs/preflight.log" 2>&1 <<'PYEOF' &
import importlib, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"machine: torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, GPU {gpu}")
for name in ("hydra", "omegaconf", "mlflow", "pytorch_lightning", "torchmetrics", "joblib", "optuna", "mnist1d", "music21"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '?')}")
    except Exception as error:
        print(f"  {name} missing: {type(error).__name__}: {error}")
PYEOF
preflight=$!

# 1. The GPU tests (skipped without CUDA).
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py > "$logs/tests.log" 2>&1
tests_status=$?
wait $preflight
cat "$logs/preflight.log"
echo "== tests: exit $tests_status: $(tail -n 1 "$logs/tests.log") ($((SECONDS - started)) s so far)"

# 2. The main command in each precision, one after the other (each timed).
main() {
  local precision=$1 t0=$SECONDS status=0
  timeout 120 $PY -m grubench +model=gru trainer=$trainer trainer.precision=$precision "${toy[@]}" \
    tracking.experiment=gpu_check hydra.run.dir="$work/runs/$precision" > "$logs/main-$precision.log" 2>&1 || status=1
  echo "$precision $((SECONDS - t0))" >> "$logs/main_times.txt"
  echo "== main command, $precision: $((SECONDS - t0)) s: $(grep -E 'test/|error' "$logs/main-$precision.log" | tail -n 1)"
  return $status
}
main_status=0
for precision in 32-true 16-mixed bf16-mixed; do main $precision || main_status=1; done

# 3. The harness against a plain loop, same model and steps.
timeout 120 $PY -m grubench.bench.overhead "${overhead[@]}" > "$logs/overhead.log" 2>&1
overhead_status=$?
echo "== overhead: exit $overhead_status: $(grep median "$logs/overhead.log") ($((SECONDS - started)) s so far)"

# 4. The bench grid, in what time is left of the 5 minutes.
budget=$(( $(left) - 30 < grid_budget ? $(left) - 30 : grid_budget ))
(( budget < 10 )) && budget=10
timeout $((budget + 60)) $PY -m grubench.bench "${grid[@]}" budget_s=$budget progress=false output_dir="$work/bench" \
  tracking.uri="$MLFLOW_TRACKING_URI" hydra.run.dir="$work/bench_hydra" > "$logs/bench.log" 2>&1
bench_status=$?
echo "== bench grid ($budget s): exit $bench_status ($((SECONDS - started)) s so far)"

# 5. The numbers to read, and the packed results.
$PY scripts/gpu_summary.py "$work" > "$OUT/check-summary.txt" 2>&1
echo "tests exit $tests_status, main commands exit $main_status, overhead exit $overhead_status, bench exit $bench_status;" \
     "$((SECONDS - started)) s in all" >> "$OUT/check-summary.txt"
cat "$OUT/check-summary.txt"
cp "$logs"/*.log "$work/runs/" 2>/dev/null
(cd "$work" && pack check-logs.tar.gz logs runs bench_hydra)
(cd "$work" && pack check-mlflow.tar.gz mlflow.db mlartifacts)
(cd "$work" && pack check-bench.tar.gz bench)
check_status=$(( tests_status || main_status || overhead_status || bench_status ))

if [ "$mode" = toy ]; then  # the second command, at toy size, into the same $OUT
  WORK_DIR=$work/full MLFLOW_TRACKING_URI=sqlite:///$work/full/mlflow.db \
    bash scripts/reproduce.sh full --budget "${REHEARSE_BUDGET:-20}" --jobs 1 --rehearse > "$logs/full.log" 2>&1
  full_status=$?
  grep -E "^(study full|== full)" "$logs/full.log"
  echo "== rehearsal: check exit $check_status, full exit $full_status, $((SECONDS - started)) s; in $OUT: $(ls "$OUT" | tr '\n' ' ')"
  exit $(( check_status || full_status ))
fi
exit $check_status
