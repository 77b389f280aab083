"""The anytime study (harness/study.py, harness/budget.py): its order, its budget, its record, and
the presets and estimates it reads from the configs Hydra composes."""

from __future__ import annotations

import json
import time

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from grubench.harness.study import (
    Estimate,
    UntilDeadline,
    check_and_estimate,
    max_time,
    plan,
    sequence_length,
    training_examples,
    training_steps,
)
from tests.cli import main_command
from tests.conftest import compose_config, runs

PRESETS = ["c1_lengths", "c2_gradients", "c3_cost", "c4_gates", "c5_gru", "minimal", "c1_real"]
SMALL = ["c1_copy", "c1_ladder", "c1_lengths", "c4_copy", "c4_gates", "minimal"]


@pytest.fixture
def hydra():
    """(Hydra's config loader, the config of a study sweep): what the sweeper's setup receives."""
    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        config = compose(config_name="config", overrides=["hydra/sweeper=study"], return_hydra_config=True)
        yield GlobalHydra.instance().config_loader(), config


def study(hydra, scale, presets, arguments=()):
    loader, config = hydra
    return plan(loader, config, scale, presets, list(arguments))


def job_config(hydra, overrides):
    loader, config = hydra
    return loader.load_sweep_config(config, list(overrides))


def test_every_claim_gets_two_seeds_of_its_first_setting_before_any_third_seed(hydra):
    jobs = study(hydra, "full", PRESETS)
    first_third_seed = next(i for i, j in enumerate(jobs) if j.seed == "2")
    early = jobs[:first_third_seed]
    assert {j.preset for j in early} == set(PRESETS)
    assert all(j.seed in ("0", "1") for j in early)
    # presets take turns: the first setting of every preset comes before any preset's second
    first_units = [j.preset for j in jobs[:30]]
    assert first_units.index("c1_real") < first_units.index("c1_lengths", 3)


def test_models_are_innermost_and_deciding_values_first(hydra):
    jobs = study(hydra, "full", ["c1_lengths"])
    assert [j.settings["model"] for j in jobs[:3]] == ["rnn", "gru", "lstm"]
    assert {j.settings["dataset.seq_len"] for j in jobs[:3]} == {"200"}  # the preset lists 200 first
    assert len(jobs) == 3 * 2 * 5 * 6


def test_arguments_win_over_the_presets_sweeps(hydra):
    jobs = study(hydra, "full", ["c3_cost"], ["seed=0", "++model.hidden_size=8"])
    assert len(jobs) == 3
    assert all("seed=0" in j.overrides and "++model.hidden_size=8" in j.overrides for j in jobs)
    assert not any(o.startswith("++model.hidden_size=1024") for j in jobs for o in j.overrides)


@pytest.mark.parametrize("scale, presets", [("small", SMALL), ("full", PRESETS)])
def test_every_presets_jobs_carry_what_its_scales_base_sets(hydra, scale, presets):
    for preset in presets:
        jobs = study(hydra, scale, [preset])
        job = job_config(hydra, jobs[0].overrides)
        assert job.trainer.enable_progress_bar is False, preset
        if scale == "small":  # two jobs at a time, on joblib's process pool
            assert job.hydra.launcher._target_.endswith("JoblibLauncher") and job.hydra.launcher.n_jobs == 2, preset
        # the base's seeds and width, where the preset does not set its own
        seeds = {"c1_ladder": 3}.get(preset, 6)
        assert sorted({j.seed for j in jobs}) == [str(s) for s in range(seeds)], preset
        if preset != "c3_cost":
            assert job.model.hidden_size == (64 if scale == "small" else 128), preset


def test_a_preset_run_on_its_own_gets_its_bases_launcher_and_sweep():
    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+experiment=small/c4_gates"], return_hydra_config=True)
        packed = compose(config_name="config", overrides=["+experiment=small/c4_gates", "hydra/launcher=pack"],
                         return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    assert cfg.trainer.enable_progress_bar is False
    assert dict(cfg.hydra.sweeper.params) == {  # the base's seed and width first
        "seed": "0,1,2,3,4,5", "++model.hidden_size": "64", "dataset": "adding", "dataset.seq_len": "50",
        "+model": "lstm_eq,lstm_nfg,lstm_nig,lstm_nog,janet,lstm_eq_chrono"}
    assert cfg.hydra.runtime.choices.experiment == "small/c4_gates"
    assert packed.hydra.runtime.choices["hydra/launcher"] == "pack"  # the command line wins over the base


def test_the_estimate_reads_each_jobs_composed_config(hydra):
    _, config = hydra
    constants = config.hydra.sweeper.estimate
    estimate = Estimate(constants, "cpu")
    gru = ["+experiment=full/c3_cost", "+model=gru", "++model.hidden_size=128"]
    # the preset's values: 6,400 sequences of length 500 in batches of 128, one epoch: 50 steps
    per_step = constants.us_per_timestep.cpu * 500 * 128 / 128 * constants.model_factor.gru / 1e6
    assert estimate.seconds(job_config(hydra, gru)) == pytest.approx(constants.job_overhead_s + 50 * per_step)
    # a command-line argument: twice the sequences, twice the steps
    longer = estimate.seconds(job_config(hydra, [*gru, "dataset.train_size=12800"]))
    assert longer == pytest.approx(constants.job_overhead_s + 100 * per_step)
    # trainer.max_time (job_max_s) caps it
    capped = estimate.seconds(job_config(hydra, [*gru, "++trainer.max_time='00:00:00:05'"]))
    assert capped == pytest.approx(constants.job_overhead_s + 5)


def test_the_study_estimates_every_job_from_its_arguments_too(hydra):
    loader, config = hydra
    estimate = Estimate(config.hydra.sweeper.estimate, "cpu")
    gru = ["+model=gru", "++model.hidden_size=128"]
    plain, longer = (study(hydra, "full", ["c3_cost"], [*gru, *more]) for more in ([], ["dataset.train_size=12800"]))
    for jobs in (plain, longer):
        check_and_estimate(loader, config, jobs, estimate)
    overhead = config.hydra.sweeper.estimate.job_overhead_s
    assert len(plain) == 6 and len({j.estimate_s for j in plain}) == 1  # the seeds share one compose
    assert longer[0].estimate_s - overhead == pytest.approx(2 * (plain[0].estimate_s - overhead))


def test_the_estimate_counts_what_each_data_sets_config_holds(hydra):
    mnist1d = job_config(hydra, ["+model=gru", "dataset=mnist1d"]).dataset
    assert training_examples(mnist1d) == 3500 and sequence_length(mnist1d) == 40
    assert training_examples(job_config(hydra, ["+model=gru", "dataset=mnist1d", "dataset.val_size=0"]).dataset) == 4000
    rows = job_config(hydra, ["+model=gru", "dataset=smnist", "dataset.steps=rows", "dataset.limit=640"]).dataset
    assert training_examples(rows) == 640 and sequence_length(rows) == 28
    digits = job_config(hydra, ["+model=gru", "dataset=digits", "dataset.val_fraction=0.2", "dataset.test_fraction=0.3"])
    assert training_examples(digits.dataset) == round(1797 * 0.5)
    # the full C5 study trains the adding task for max_steps, not its epochs
    adding = job_config(hydra, ["+experiment=full/c5_gru", "+model=gru", "dataset=adding"])
    assert training_steps(adding) == min(adding.trainer.max_steps, 30 * 157)  # 30 epochs of 157 batches
    limited = job_config(hydra, ["+model=gru", "trainer.limit_train_batches=2", "trainer.max_epochs=3"])
    assert training_steps(limited) == 6
    assert training_steps(job_config(hydra, ["+model=gru", "trainer.limit_train_batches=0.5"])) == 10 * 78


def test_psmnist_is_smnist_permuted():
    smnist, psmnist = (OmegaConf.to_container(compose_config([f"dataset={name}"]).dataset)
                       for name in ("smnist", "psmnist"))
    assert smnist.pop("permute") is False and psmnist.pop("permute") is True
    assert psmnist == smnist


def test_no_job_is_handed_out_after_the_deadline():
    jobs = UntilDeadline(list(range(5)), time.time() + 3600)
    assert list(jobs) == [0, 1, 2, 3, 4] and len(jobs) == 5
    assert list(UntilDeadline(list(range(5)), time.time() - 1)) == []
    assert max_time(90) == "00:00:01:30" and max_time(3 * 86400 + 61) == "03:00:01:01"


def test_a_spent_budget_leaves_every_run_out_and_lists_them(tmp_path):
    done = main_command(["-m", "hydra/sweeper=study", "hydra.sweeper.presets=[c3_cost]", "hydra.sweeper.budget_s=0",
                         f"hydra.sweep.dir={tmp_path / 'sweep'}", f"tracking.uri={tmp_path / 'mlflow.db'}"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "study full: 72 runs (c3_cost 72)" in done.stdout
    left = json.loads((tmp_path / "sweep" / "left_out.json").read_text())
    assert left["runs"] == 72 and left["started"] == 0 and left["left_out_by_budget"] == 72
    assert [s["setting"] for s in left["settings"]][:4] == [f"model.hidden_size={h}" for h in (1024, 512, 256, 128)]
    (parent,) = runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert parent.data.tags["study/left_out"] == "72" and parent.data.tags["study/started"] == "0"
    assert parent.data.tags["study/left_out_settings"].startswith("c3_cost model.hidden_size=1024 (budget): rnn@0,gru@0")


def test_the_pack_launcher_runs_one_job_per_core_in_the_sweeps_order():
    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=pack"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert cfg.hydra.launcher.n_jobs == -1 and str(cfg.hydra.launcher.batch_size) == "1"
    assert cfg.threads == 1
