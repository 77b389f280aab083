#!/usr/bin/env bash
# The full claims study as one anytime sweep on one machine, then the report (docs/gpu.md).
#
#   scripts/reproduce.sh full [--budget S] [--jobs N] [--rehearse]
#
# Every preset of conf/experiment/full/ in one sweep (hydra/sweeper=study), N jobs side by side
# (hydra/launcher=pack; N: one per CPU core), ordered so that every claim gets its deciding
# settings first and seeds interleave. With --budget S no job starts after S seconds, and each
# job trains at most JOB_MAX_S seconds (default 90), so the command ends within about
# S + JOB_MAX_S + the report. The study prints its run count and a rough estimate first.
# --rehearse runs the same steps at toy size (a few batches, width 8) on the CPU.
#
# Writes, under $WORK_DIR (default: the repository root), the runs to $MLFLOW_TRACKING_URI (else
# mlflow.db), the report to report-full/ with left_out.json and left_out.md (the settings the
# budget left out), the sweep to multirun/full/study/<time>/. With $OUT set, packs into it: full-summary.txt,
# full-logs.tar.gz, full-mlflow.tar.gz, full-report.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
budget=null jobs=-1 rehearse=false
while (($#)); do
  case "$1" in
    --budget) budget=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --rehearse) rehearse=true; shift ;;
    *) echo "usage: scripts/reproduce.sh full [--budget SECONDS] [--jobs N] [--rehearse]" >&2; exit 2 ;;
  esac
done
source scripts/gpu_env.sh
started=$SECONDS
work=${WORK_DIR:-$PWD}
mkdir -p "$work" && work=$(cd "$work" && pwd)
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$work/mlflow.db}
sweep_dir=$work/multirun/full/study/$(date +%Y-%m-%d_%H-%M-%S)
mkdir -p "$sweep_dir"
log=$sweep_dir/study.log
args=(hydra/sweeper=study hydra/launcher=pack hydra.launcher.n_jobs="$jobs" hydra.sweeper.scale=full
      hydra.sweeper.budget_s="$budget" hydra.sweep.dir="$sweep_dir")
[ "$budget" != null ] && args+=(hydra.sweeper.job_max_s="${JOB_MAX_S:-90}")
if $rehearse || ! $PY -c "import music21" 2>/dev/null; then
  # A GPU machine set up as docs/gpu.md says has no music21; the rehearsal leaves them out too:
  # two jobs parsing the corpus at once have failed reading a compressed file (zlib error -5),
  # not yet solved.
  echo "full study: the Bach chorales are left out (no music21 here, or a rehearsal)"
  args+=('hydra.sweeper.leave_out=["dataset=chorales"]')
fi
if $rehearse; then  # toy size: every job a few batches of a width-8 model
  args+=(trainer.max_epochs=1 trainer.limit_train_batches=2 trainer.limit_val_batches=1 trainer.limit_test_batches=1
         dataset.limit=32 ++model.hidden_size=8 tracking.log_checkpoint=false hydra.sweeper.device=cpu)
fi

$PY -m grubench -m "${args[@]}" 2>&1 | tee "$log"
study_status=${PIPESTATUS[0]}
echo "== full study: $((SECONDS - started)) s, exit $study_status"

report_dir=$work/report-full
$PY -m grubench.report --out "$report_dir" > "$sweep_dir/report.log" 2>&1
report_status=$?
tail -n 3 "$sweep_dir/report.log"
mkdir -p "$report_dir"
if [ -f "$sweep_dir/left_out.json" ]; then
  cp "$sweep_dir/left_out.json" "$report_dir/"
  $PY - "$report_dir/left_out.json" > "$report_dir/left_out.md" <<'PYEOF'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"# Settings left out of the full study\n\n{report['started']} of {report['runs']} runs started "
      f"(budget {report['budget_s']} s, {report['elapsed_s']} s spent); {report['left_out_by_budget']} left out "
      f"by the budget, {report['left_out_as_asked']} as asked.\n")
if report["settings"]:
    print("| preset | claims | setting | why | models@seeds |\n|---|---|---|---|---|")
for s in report["settings"]:
    print(f"| {s['preset']} | {','.join(s['claims'])} | {s['setting'] or '-'} | {s['why']} | {' '.join(s['models_at_seeds'])} |")
PYEOF
fi
echo "== full study and report: $((SECONDS - started)) s"

if [ -n "${OUT:-}" ]; then
  {
    echo "full study: exit $study_status, report exit $report_status, $((SECONDS - started)) s, budget $budget s"
    grep -E "^study full" "$log"
    [ -f "$report_dir/report.md" ] && sed -n '1,15p' "$report_dir/report.md"
    echo
    [ -f "$report_dir/left_out.md" ] && cut -c 1-300 "$report_dir/left_out.md" | head -n 40
  } > "$OUT/full-summary.txt"
  db=${MLFLOW_TRACKING_URI#sqlite:///}
  (cd "$work" && pack full-logs.tar.gz "${sweep_dir#$work/}")
  (cd "$(dirname "$db")" && pack full-mlflow.tar.gz "$(basename "$db")" mlartifacts)
  (cd "$work" && pack full-report.tar.gz report-full)
fi
[ "$study_status" -eq 0 ] && [ "$report_status" -eq 0 ]
