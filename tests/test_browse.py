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
