#!/usr/bin/env bash
# Run every claim study at one scale, then write the claims report.
#
#   scripts/reproduce.sh small [STUDY...]
#   scripts/reproduce.sh full [--budget S] [--jobs N] [--rehearse]
#
# With STUDY names (e.g. c4_gates c4_copy) only those studies run, then the report; the report
# always reads the whole store, so studies run earlier still count.
# small: every small preset but minimal as one anytime sweep (hydra/sweeper=study, the order of docs/gpu.md:
#        seeds 0 and 1 of every setting first, the presets taking turns), two jobs at a time on a
#        2-core CPU (hydra/launcher=pack, one thread each); then the bench's kernels of the same
#        kind side by side (grid=claims, 2 rounds: the times C3 and C5 show beside their counts);
#        18 minutes on a quiet 2-core CPU (docs/claims.md). C2, C3 and C5 read the C1 studies' runs.
# full:  sized for one GPU, closer to the papers' settings.
# Runs go to $MLFLOW_TRACKING_URI, else ./mlflow.db; the report to ./report-<scale>/.
# Failed jobs do not stop the others; the script then exits non-zero.
set -uo pipefail

scale=${1:-small}
case "$scale" in
  small|full) ;;
  *) echo "usage: scripts/reproduce.sh [small|full] [STUDY...]" >&2; exit 2 ;;
esac
# full: every study as one anytime sweep on one machine, with --budget S (scripts/full_study.sh).
[ "$scale" = full ] && exec bash "$(dirname "$0")/full_study.sh" "${@:2}"

export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}
studies=(c1_lengths c1_copy c4_gates c4_copy c1_ladder)
if (($# > 1)); then
  studies=("${@:2}")
fi
presets=$(IFS=,; echo "${studies[*]}")
failed=()
start=$SECONDS
python -m grubench -m hydra/sweeper=study hydra/launcher=pack hydra.sweeper.scale=small \
  "hydra.sweeper.presets=[$presets]" hydra.sweeper.device=cpu \
  hydra.sweep.dir="multirun/small/study/$(date +%Y-%m-%d_%H-%M-%S)" || failed+=(study)
echo "== small studies ($presets): $((SECONDS - start)) s"
bench=$SECONDS
python -m grubench.bench grid=claims rounds=2 repeats=3 progress=false \
  hydra.run.dir="outputs/bench/$(date +%Y-%m-%d_%H-%M-%S)" > /dev/null || failed+=(bench)
echo "== bench (grid=claims): $((SECONDS - bench)) s"

python -m grubench.report --out "report-$scale" || failed+=(report)
echo "all studies and the report: $((SECONDS - start)) s"
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
