"""The anytime study (harness/study.py, harness/budget.py): its order, its budget, its record."""

from __future__ import annotations

import json
import time

from grubench.harness.study import UntilDeadline, max_time, plan
from tests.conftest import run_cli, runs

PRESETS = ["c1_lengths", "c2_gradients", "c3_cost", "c4_gates", "c5_gru", "minimal", "c1_real"]


def test_every_claim_gets_two_seeds_of_its_first_setting_before_any_third_seed():
    jobs = plan("full", PRESETS, [])
    first_third_seed = next(i for i, j in enumerate(jobs) if j.seed == "2")
    early = jobs[:first_third_seed]
    assert {j.preset for j in early} == set(PRESETS)
    assert all(j.seed in ("0", "1") for j in early)
    # presets take turns: the first setting of every preset comes before any preset's second
    first_units = [j.preset for j in jobs[:30]]
    assert first_units.index("c1_real") < first_units.index("c1_lengths", 3)


def test_models_are_innermost_and_deciding_values_first():
    jobs = [j for j in plan("full", ["c1_lengths"], []) if j.seed == "0"]
    assert [j.settings["model"] for j in jobs[:3]] == ["rnn", "gru", "lstm"]
    assert {j.settings["dataset.seq_len"] for j in jobs[:3]} == {"200"}  # the preset lists 200 first
    assert len(plan("full", ["c1_lengths"], [])) == 3 * 2 * 5 * 5


def test_arguments_win_over_the_presets_sweeps():
    jobs = plan("full", ["c3_cost"], ["seed=0", "++model.hidden_size=8"])
    assert len(jobs) == 3
    assert all("seed=0" in j.overrides and "++model.hidden_size=8" in j.overrides for j in jobs)
    assert not any(o.startswith("++model.hidden_size=1024") for j in jobs for o in j.overrides)


def test_no_job_is_handed_out_after_the_deadline():
    jobs = UntilDeadline(list(range(5)), time.time() + 3600)
    assert list(jobs) == [0, 1, 2, 3, 4] and len(jobs) == 5
    assert list(UntilDeadline(list(range(5)), time.time() - 1)) == []
    assert max_time(90) == "00:00:01:30" and max_time(3 * 86400 + 61) == "03:00:01:01"


def test_a_spent_budget_leaves_every_run_out_and_lists_them(tmp_path):
    done = run_cli(["-m", "hydra/sweeper=study", "hydra.sweeper.presets=[c3_cost]", "hydra.sweeper.budget_s=0",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", f"tracking.uri={tmp_path / 'mlflow.db'}"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "study full: 60 runs (c3_cost 60)" in done.stdout
    left = json.loads((tmp_path / "sweep" / "left_out.json").read_text())
    assert left["runs"] == 60 and left["started"] == 0 and left["left_out_by_budget"] == 60
    assert [s["setting"] for s in left["settings"]][:4] == [f"model.hidden_size={h}" for h in (1024, 512, 256, 128)]
    (parent,) = runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert parent.data.tags["study/left_out"] == "60" and parent.data.tags["study/started"] == "0"
    assert parent.data.tags["study/left_out_settings"].startswith("c3_cost model.hidden_size=1024 (budget): rnn@0,gru@0")


def test_the_pack_launcher_runs_one_job_per_core_in_the_sweeps_order():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=pack"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == -1 and str(cfg.hydra.launcher.batch_size) == "1"
    assert cfg.threads == 1
