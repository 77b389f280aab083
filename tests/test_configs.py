"""Every config group composes, and every option instantiates into a working object."""

import pytest
import torch

from grubench.config import build, check, choices
from grubench.errors import ConfigError
from tests.conftest import compose_config

MODELS = choices("model")
DATASETS = [d for d in choices("dataset") if d not in ("smnist", "psmnist", "arrays")]  # these need files on disk


def test_groups_list_their_options():
    assert {"rnn", "gru", "lstm"} <= set(MODELS)
    assert {"adding", "copy", "digits"} <= set(choices("dataset"))
    assert {"default", "cpu", "gpu", "debug"} <= set(choices("trainer"))
    assert {"adam", "adamw"} <= set(choices("optim"))


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_builds_and_serves_a_batch(dataset):
    quick = ["dataset.max_pieces=6"] if dataset == "chorales" else []  # parsing all 350 chorales takes ~25 s
    cfg = compose_config(["+model=gru", f"dataset={dataset}", "dataset.limit=8", *quick])
    datamodule = build(cfg.dataset, "dataset")
    datamodule.setup()
    x, y, *mask = next(iter(datamodule.train_dataloader()))
    assert len(x) == len(y) <= 8
    if mask:  # variable lengths: a batch is cut to its longest sequence
        assert x.shape[1] == int(mask[0].sum(1).max()) <= datamodule.spec.seq_len
    else:
        assert x.shape[1] == datamodule.spec.seq_len


@pytest.mark.parametrize("model", MODELS)
def test_every_model_builds_for_each_output_kind(model):
    for dataset in ("adding", "copy", "digits"):
        cfg = compose_config([f"+model={model}", f"dataset={dataset}", "dataset.limit=4", "model.hidden_size=8"])
        datamodule = build(cfg.dataset, "dataset")
        datamodule.setup()
        net = build(cfg.model, "model", task=datamodule.spec)
        x, y, *_ = next(iter(datamodule.train_dataloader()))
        out = net(x)
        spec = datamodule.spec
        expected = {"regression": (len(x),), "classification": (len(x), spec.num_outputs),
                    "per_step_classification": (len(x), spec.seq_len, spec.num_outputs)}[spec.output]
        assert out.shape == expected


@pytest.mark.parametrize("trainer", ["default", "cpu", "debug"])
def test_trainer_options_instantiate(trainer):
    cfg = compose_config(["+model=gru", f"trainer={trainer}"])
    built = build(cfg.trainer, "trainer", logger=False, enable_checkpointing=False)
    assert built.max_epochs >= 1


@pytest.mark.parametrize("optim", ["adam", "adamw"])
def test_optimisers_instantiate(optim):
    cfg = compose_config(["+model=gru", f"optim={optim}"])
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(build(cfg.optim, "optim", params=params), torch.optim.Optimizer)


def test_missing_model_names_the_choices():
    with pytest.raises(ConfigError, match=r"\+model=NAME, one of: .*gru.*lstm.*rnn"):
        check(compose_config([]))


@pytest.mark.parametrize("override, message", [
    ("model.hidden_size=0", "hidden_size must be a positive integer"),
    ("model.num_layers=-1", "num_layers must be a positive integer"),
    ("model.dropout=1.5", "dropout must lie in"),
])
def test_bad_model_values_are_one_line(override, message):
    cfg = compose_config(["+model=lstm", override])
    datamodule = build(cfg.dataset, "dataset")
    with pytest.raises(ConfigError, match=message) as error:
        build(cfg.model, "model", task=datamodule.spec)
    assert "\n" not in str(error.value)


def test_all_steps_readout_gives_the_mnist1d_papers_parameter_count():
    # Greydanus & Kobak's GRU: bidirectional, hidden 6, one Linear over all 40 steps: 5,134 parameters
    from grubench.spec import TaskSpec

    spec = TaskSpec("mnist1d", "real", 1, "classification", 10, 40, "acc", {"acc": 0.1})
    cfg = compose_config(["+model=gru", "model.hidden_size=6", "model.bidirectional=true", "model.readout=all_steps"])
    net = build(cfg.model, "model", task=spec)
    assert net.parameter_counts()["params/total"] == 5134
    assert net(torch.randn(3, 40, 1)).shape == (3, 10)
    with pytest.raises(ConfigError, match="readout must be 'last' or 'all_steps'"):
        build(compose_config(["+model=gru", "model.readout=first"]).model, "model", task=spec)
