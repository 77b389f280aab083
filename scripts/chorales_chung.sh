#!/usr/bin/env bash
# Chung et al. 2014's comparison on polyphonic music, on grubench's Bach chorales: a tanh RNN of 100
# units, a GRU of 46 and an LSTM of 36 (about 20k parameters each), next-step NLL per time step.
# Their JSB Chorales test NLL: 9.19 / 8.54 / 8.67. Extra arguments go to every run, e.g.
#   scripts/chorales_chung.sh seed=1 tracking.uri=/abs/path/mlflow.db
set -euo pipefail
common=(dataset=chorales dataset.batch_size=16 optim.lr=0.003 trainer.max_epochs=300
        early_stopping.patience=25 tracking.experiment=chorales_chung "claims=[C1]" "$@")
python -m grubench +model=rnn model.hidden_size=100 "${common[@]}"
python -m grubench +model=gru model.hidden_size=46 "${common[@]}"
python -m grubench +model=lstm model.hidden_size=36 "${common[@]}"
