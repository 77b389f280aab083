#!/usr/bin/env bash
# Choose each model's learning rate for a study, on seeds kept apart from the seeds that decide.
#
#   scripts/calibrate.sh small|full [PRESET...]   # default: every preset of that scale that decides a claim
#
# For each preset: its sweep on seeds 100 and 101 over the learning rates 0.003, 0.01 and 0.03,
# recorded in the MLflow experiment `calibration` with no claim (the report never reads them);
# then scripts/calibrate.py prints, per preset and model, the rate that did best on validation,
# to write into the preset's `study_lr` with the date and this outcome in a comment.
# Runs go to $MLFLOW_TRACKING_URI, else ./mlflow.db.
set -uo pipefail
scale=${1:-small}
presets=("${@:2}")
if ((${#presets[@]} == 0)); then  # the presets that name deciding settings (`decides:`)
  for file in "$(dirname "$0")/../conf/experiment/$scale"/*.yaml; do
    grep -q "^decides:" "$file" && presets+=("$(basename "$file" .yaml)")
  done
fi
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/mlflow.db}
start=$SECONDS
for preset in "${presets[@]}"; do
  python -m grubench -m "+experiment=$scale/$preset" seed=100,101 optim.lr=0.003,0.01,0.03 \
    claims=[] 'decides={}' tracking.experiment=calibration gradient_flow=[] \
    hydra.sweep.dir="multirun/calibration/$scale-$preset" || echo "calibration of $preset: some jobs failed" >&2
done
echo "== calibration ($scale: ${presets[*]}): $((SECONDS - start)) s"
python "$(dirname "$0")/calibrate.py" "tracking.uri=$MLFLOW_TRACKING_URI"
