"""How a run reads in the MLflow UI (3.x): which model did best, without clicking.

    run name      <model>-<dataset>[-<other overrides>]-seed<N>, unique in its experiment (where
                  the store is, `tracking.*`, is no part of a name)
    description   the summary line the command printed (tag mlflow.note.content)
    dataset       the data set as the run's dataset input: name, a digest of its config, sizes
    the link      the experiment's runs table in a saved view (an experiment tag
                  mlflow.sharedViewState.<key>, opened by ?viewStateShareKey=<key>): the task
                  metric, params/total, speed/step_ms, model, dataset and seed as columns,
                  sorted by the task metric, best first, every run of that metric a row
                  (sweep jobs too: their parents are filtered out)

The experiment is marked as model training (tag mlflow.experimentKind), so that MLflow opens
its runs table rather than the GenAI overview.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from mlflow.entities import Dataset, DatasetInput, InputTag

from grubench.harness.store import Run, Store, retrying, sqlite_path
from grubench.internals import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    RUNS_TABLE_PARAMETERS,
    SHARED_VIEW_TAG,
    VIEW_PARAMETER,
)

# Keys of the Hydra overrides that already appear in a run name's first part (or its end: the seed).
NAMED_IN_RUN_NAME = ("model", "+model", "dataset", "seed")
STORE_KEYS = "tracking."   # where a run is stored (tracking.uri, tracking.experiment): not what it is
LOCAL_UI = "http://127.0.0.1:5000"   # where `mlflow ui` serves by default


def run_name(given: str | None, model: str, dataset: str, seed: int, overrides: list[str]) -> str:
    """`given` (the run_name setting), or <model>-<dataset>, the overrides that set anything else, the seed."""
    if given:
        return str(given)
    extra = [o.lstrip("+~") for o in naming(overrides) if o.split("=", 1)[0] not in NAMED_IN_RUN_NAME]
    return "-".join([model, dataset, *extra, f"seed{seed}"])


def naming(overrides: list[str]) -> list[str]:
    """The overrides that may name a run (a job, or a sweep's parent): those of `tracking.*` left out."""
    return [o for o in overrides if not o.lstrip("+~").startswith(STORE_KEYS)]


def unique_name(store: Store, name: str) -> str:
    """`name`, or `name-2`, `name-3`, ... when runs of the experiment already carry it."""
    if "'" in name:
        return name  # not expressible in a search filter; names with quotes are rare enough
    runs = retrying(store.client.search_runs, [store.experiment_id], f"attributes.run_name LIKE '{name}%'",
                    max_results=5000)
    taken = {run.info.run_name for run in runs}
    if name not in taken:
        return name
    count = 2
    while f"{name}-{count}" in taken:
        count += 1
    return f"{name}-{count}"


def rounded(value: Any) -> str:
    """A number as a tag a reader takes in at a glance: 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def log_dataset(run: Run, name: str, config: Mapping[str, Any], sizes: Mapping[str, Any]) -> None:
    """The data set as the run's dataset input: its name, a digest of its settings (the same data
    have the same digest), its settings as the source and its sizes as the profile."""
    settings = {key: value for key, value in config.items() if key not in ("_target_", "batch_size", "seed")}
    source = json.dumps(settings, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{name} {source}".encode()).hexdigest()[:8]
    dataset = Dataset(name=name, digest=digest, source_type="code", source=source,
                      profile=json.dumps(dict(sizes), default=str))
    retrying(run.store.client.log_inputs, run.id,
             [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])])


def describe(run: Run, summary: str) -> None:
    """The summary line as the run's description (shown on the run's page and as a column)."""
    run.set_tags({"mlflow.note.content": summary})


def view(store: Store, metric: str, mode: str) -> str:
    """Save the runs-table view for `metric` in the experiment (once) and return its key."""
    key = f"grubench-{metric.replace('/', '-')}"
    columns = [f"metrics.`{metric}`", "metrics.`params/total`", "metrics.`speed/step_ms`",
               "tags.`model`", "tags.`dataset`", "tags.`seed`", "attributes.`Dataset`", "attributes.`Duration`"]
    state = {
        "selectedColumns": columns,
        "columnOrder": columns,
        # Training runs of this metric only: sweep parents (which have no task) drop out, so their
        # jobs show as rows of their own instead of folded under the parent.
        "searchFilter": f"tags.`task/metric` = '{metric.split('/', 1)[1]}'",
        "orderByKey": f"metrics.`{metric}`",
        "orderByAsc": mode == "min",
        "lifecycleFilter": "Active",
    }
    tags = {f"{SHARED_VIEW_TAG}{key}": json.dumps(state), EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}
    existing = retrying(store.client.get_experiment, store.experiment_id).tags
    for name, value in tags.items():
        if existing.get(name) != value:
            retrying(store.client.set_experiment_tag, store.experiment_id, name, value)
    return key


def link(store: Store, metric: str, mode: str) -> str:
    """The address of the experiment's runs table in the view for `metric`."""
    base = LOCAL_UI if sqlite_path(store.uri) else store.uri.rstrip("/")
    return (f"{base}/#/experiments/{store.experiment_id}/runs?{RUNS_TABLE_PARAMETERS}"
            f"&{VIEW_PARAMETER}={view(store, metric, mode)}")


def browse_lines(store: Store, metric: str, mode: str) -> str:
    """What to do to see the runs: start the UI for a SQLite store, then open the link."""
    address = link(store, metric, mode)
    if sqlite_path(store.uri):
        return f"  browse: {store.browse_hint()}\n  then open {address}"
    return f"  browse: {address}"
