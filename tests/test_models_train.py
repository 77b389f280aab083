"""Every cell-loop model config (the minimal RNNs on their step loop, auto's choice on a CPU) trains end to end with the
real command line, in one sweep, and learns: an untrained model predicts about 0 where the sums
average 1 (test MSE about 1.2); after 20 steps every model's is below half of that."""

import pytest

from grubench.config import build
from grubench.models import counting
from tests.conftest import compose_config, runs

NEW_MODELS = ["gru_doc", "janet", "lstm_nfg", "lstm_nig", "lstm_nog", "lstm_cifg", "lstm_eq",
              "rnn_loop", "gru_loop", "lstm_loop", "mingru", "minlstm"]


@pytest.mark.slow
def test_every_cell_loop_model_trains_on_adding_in_one_multirun(tmp_path, cli, store):
    result = cli("-m", f"+model={','.join(NEW_MODELS)}", "trainer=debug", "dataset=adding", "dataset.limit=160",
                 "dataset.seq_len=10", "dataset.batch_size=16", "trainer.max_epochs=2", "trainer.limit_train_batches=10",
                 "optim.lr=0.05", "++model.hidden_size=8", "tracking.log_checkpoint=false",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 0, result.stderr[-3000:]
    children = [r for r in runs(store) if r.data.tags.get("sweep") != "parent"]
    assert sorted(r.data.tags["model"] for r in children) == sorted(NEW_MODELS)
    for run in children:
        name = run.data.tags["model"]
        assert run.info.status == "FINISHED", name
        metrics = run.data.metrics
        assert metrics["train/steps"] == 20 and metrics["test/mse"] < 0.6, (name, metrics["test/mse"])
        cfg = compose_config([f"+model={name}", "dataset.seq_len=10", "model.hidden_size=8"])
        model = build(cfg.model, "model", task=build(cfg.dataset, "dataset").spec)
        s = counting.structure(model.recurrent)
        assert metrics["params/recurrent"] == counting.parameters(s), name
        assert metrics["params/total"] == counting.parameters(s) + 8 + 1, name  # head Linear(8, 1)
        assert metrics["flops/step"] == counting.flops(s), name
    janet = next(r for r in children if r.data.tags["model"] == "janet")
    # JANET, input 2, hidden 8: 2 H (F + H) + 2 H
    assert janet.data.metrics["params/recurrent"] == counting.cell_parameters(2, 1, 2, 8) == 176
