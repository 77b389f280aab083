"""How a run reads in the MLflow UI (README, "Browsing results"): a unique name with the seed,
the summary line as description, the data set as dataset input, a saved view the printed link
opens, and a terminal that shows one plain line per epoch when it is not a terminal."""

from __future__ import annotations

import json
import re

from mlflow.tracking import MlflowClient

from grubench.harness import browse
from grubench.harness.store import Store
from tests.conftest import TINY, run_cli, runs


def test_run_names_carry_the_seed_and_stay_unique(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'mlflow.db'}", "default")
    name = browse.run_name(None, "gru", "adding", 3, ["+model=gru", "seed=3", "++model.hidden_size=8"])
    assert name == "gru-adding-model.hidden_size=8-seed3"
    assert browse.unique_name(store, name) == name
    store.create_run(name, {})
    store.create_run(f"{name}-2", {})
    assert browse.unique_name(store, name) == f"{name}-3"
    assert browse.run_name("mine", "gru", "adding", 3, []) == "mine"


def test_a_run_piped_to_a_file_is_plain_lines_and_reads_well_in_mlflow(tmp_path):
    result = run_cli(["+model=gru", *TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=2",
                      "trainer.enable_progress_bar=true"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no third-party notices, no warnings
    lines = result.stdout.splitlines()
    assert len(lines) <= 20 and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", result.stdout)
    assert [line.split(":")[0] for line in lines if line.startswith("epoch")] == ["epoch 1/2", "epoch 2/2"]
    summary = next(line for line in lines if line.startswith("gru on adding: test/mse = "))
    assert "than chance (0.1667)" in summary

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (run,) = runs(uri)
    assert run.info.run_name == "gru-adding-trainer=debug-dataset.limit=64-model.hidden_size=8-" \
                                "trainer.max_epochs=2-trainer.limit_train_batches=2-trainer.enable_progress_bar=true-seed0"
    assert run.data.tags["mlflow.note.content"] == summary
    assert run.data.tags["task/chance"] == "0.1667"
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "adding" and json.loads(dataset.dataset.profile)["train/sequences"] == 64

    link = lines[-1].split("then open ")[1]
    key = link.split("viewStateShareKey=")[1]
    experiment = MlflowClient(uri).get_experiment(run.info.experiment_id)
    view = json.loads(experiment.tags[f"mlflow.sharedViewState.{key}"])
    assert view["selectedColumns"][0] == view["orderByKey"] == "metrics.`test/mse`" and view["orderByAsc"]
    assert {"metrics.`params/total`", "metrics.`speed/step_ms`", "tags.`seed`"} <= set(view["selectedColumns"])
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert link.startswith(f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs?")
