"""Run names (README, "Browsing results"): the seed in every name, and unique in an experiment.
What a whole run shows in MLflow is checked end to end in tests/test_harness.py."""

from __future__ import annotations

from grubench.harness import browse
from grubench.harness.store import Store


def test_run_names_carry_the_seed_and_stay_unique(store):
    store = Store.open(store, "default")
    name = browse.run_name(None, "gru", "adding", 3, ["+model=gru", "seed=3", "++model.hidden_size=8"])
    assert name == "gru-adding-model.hidden_size=8-seed3"
    assert browse.unique_name(store, name) == name
    store.create_run(name, {})
    store.create_run(f"{name}-2", {})
    assert browse.unique_name(store, name) == f"{name}-3"
    assert browse.run_name("mine", "gru", "adding", 3, []) == "mine"
    # where the store is belongs to no name
    assert browse.run_name(None, "gru", "adding", 0, ["+model=gru", "tracking.uri=http://127.0.0.1:5000",
                                                      "tracking.experiment=x", "optim.lr=0.1"]) == "gru-adding-optim.lr=0.1-seed0"
