"""The team store (docs/team.md) against a real PostgreSQL and a real `mlflow server`, with basic
auth on (the slow pass): the page's commands in order, a resumed run, one search shared by three
workers (one killed with kill -9), eight runs at once, the server restarted while a sweep trains,
PostgreSQL or the server down at start, and no credential in any run record. In the quick pass,
without a server: passwords redacted and never recorded, a refusing server said in one line, how
a shared study counts its trials.

One store serves every test of a session, the xdist workers' too: the first test that needs it
starts it with the page's own `start` line (about 20 s: initdb, MLflow's tables), and the worker
that started it stops it with the page's `stop` line when its session ends, once no test of
another worker still uses it (each test holds a shared lease on it; the restart test an exclusive
one). PostgreSQL refuses root: started by root, the team command runs it as the user `postgres`.
Without PostgreSQL's server programs these tests fail, saying so; they never skip.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from filelock import FileLock
from mlflow.tracking import MlflowClient

from grubench.errors import TrackingError
from grubench.harness.store import check_store
from tests.cli import command, main_command
from tests.conftest import TINY, TINY_SWEEP
from tests.test_faults import KILL_AT, SHORT

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "team.md"
DOC_FOLDER, DOC_PORT, DOC_DB_PORT = "~/grubench-team", "5000", "5433"
PASSWORD_SHOWN = "<the password it printed>"
TEAM = "grubench.harness.team"
# Settings added to the page's training commands, so that each takes seconds.
TINY_SEARCH = ["trainer=debug", "dataset.limit=64", "hydra.sweeper.n_trials=2"]


@dataclass
class Team:
    """A running team store and a user of it (the tests' own, `tester`)."""

    folder: str
    port: int
    db_port: int
    password: str      # tester's
    start_s: float     # how long the page's start command took

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage(self) -> str:
        return f"postgresql+psycopg://grubench@127.0.0.1:{self.db_port}/optuna"

    @property
    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_USERNAME": "tester", "MLFLOW_TRACKING_PASSWORD": self.password,
                "PGPASSFILE": f"{self.folder}/pgpass"}

    def client(self, monkeypatch) -> MlflowClient:
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        return MlflowClient(self.uri)

    def text(self, line: str) -> str:
        """A line of the page with this store's folder and ports in place of the page's."""
        line = line.replace(DOC_FOLDER, self.folder)
        return re.sub(rf"\b{DOC_DB_PORT}\b", str(self.db_port), re.sub(rf"\b{DOC_PORT}\b", str(self.port), line))


def doc_commands() -> list[str]:
    """The page's commands, in order: its indented lines that start with `python -m` or `export`."""
    text = re.sub(r"\\\n\s*", " ", DOC.read_text())
    return [line.strip() for line in text.splitlines() if re.match(r" {4,}(python -m |export )", line)]


def doc_refusal() -> str:
    (line,) = [line.strip() for line in DOC.read_text().splitlines() if line.startswith("    grubench: error:")]
    return line


def doc_command(word: str) -> str:
    (line,) = [c for c in doc_commands() if f" {TEAM} {word} " in c]
    return line


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_line(line: str, cwd: Path, env: dict[str, str] | None = None):
    """A `python -m MODULE ARGS` line, in this process (tests/cli.py)."""
    words = shlex.split(line)
    assert words[:2] == ["python", "-m"], line
    return command(words[2], words[3:], cwd, env)


def start_team() -> Team:
    folder = Path(tempfile.mkdtemp(prefix="grubench-team-"))
    folder.chmod(0o755)  # PostgreSQL's own user must reach the cluster inside it
    team = Team(str(folder / "team"), free_port(), free_port(), "", 0.0)
    began = time.monotonic()
    started = run_line(team.text(doc_command("start")), folder)
    team.start_s = time.monotonic() - began
    if started.returncode != 0:
        pytest.fail(f"the team store did not start (PostgreSQL 15 and its server programs are needed: "
                    f"apt-get install postgresql-15): {started.stderr.strip()}")
    assert f"runs:     tracking.uri={team.uri}" in started.stdout, started.stdout
    assert f"hydra.sweeper.storage={team.storage}" in started.stdout, started.stdout
    added = command(TEAM, ["user", team.folder, "tester"], folder)
    assert added.returncode == 0, added.stderr
    team.password = re.search(r"MLFLOW_TRACKING_PASSWORD=(\S+)", added.stdout).group(1)
    return team


def stop_team(team: Team) -> None:
    stopped = run_line(team.text(doc_command("stop")), Path(team.folder).parent)
    assert stopped.returncode == 0, stopped.stderr
    shutil.rmtree(Path(team.folder).parent, ignore_errors=True)


@pytest.fixture(scope="session")
def team_shared(tmp_path_factory, request):
    """(the folder the session's xdist workers share, the stores this worker started); at the end
    of this worker's session it stops those, once no other test holds a lease on them."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if hasattr(request.config, "workerinput") else base
    started: list[Team] = []
    yield shared, started
    for team in started:
        with FileLock(shared / "team.lock"), open(shared / "team.lease", "a") as lease:
            fcntl.flock(lease, fcntl.LOCK_EX)
            (shared / "team.json").unlink(missing_ok=True)
            stop_team(team)


def leased(team_shared, exclusive: bool):
    shared, started = team_shared
    lease = open(shared / "team.lease", "a")
    with FileLock(shared / "team.lock"):
        fcntl.flock(lease, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        info = shared / "team.json"
        if not info.exists():
            started.append(start_team())
            info.write_text(json.dumps(asdict(started[-1])))
        team = Team(**json.loads(info.read_text()))
    try:
        yield team
    finally:
        fcntl.flock(lease, fcntl.LOCK_UN)
        lease.close()


@pytest.fixture
def team(team_shared):
    """The session's team store, shared with other tests."""
    yield from leased(team_shared, exclusive=False)


@pytest.fixture
def team_alone(team_shared):
    """The session's team store, no other test using it (this one stops and restarts its parts)."""
    yield from leased(team_shared, exclusive=True)


def children(client: MlflowClient, experiment: str):
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    parents = [r for r in found if r.data.tags.get("sweep") == "parent"]
    assert len(parents) == 1, [(r.info.run_name, r.info.status, r.data.tags.get("sweep")) for r in found]
    return parents[0], [r for r in found if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]


def shape(output: str, team: Team, cwd: Path) -> list[str]:
    """What a command printed, without what differs from run to run and store to store."""
    output = output.replace(team.uri, "STORE").replace(f"sqlite:///{cwd}/mlflow.db", "STORE")
    output = re.sub(r"[0-9a-f]{32}", "ID", output)
    output = re.sub(r"\d+(\.\d+)?", "N", output)
    return [line for line in output.splitlines() if "browse:" not in line and "then open" not in line]


@pytest.mark.slow
def test_the_team_page_runs_as_written(team, tmp_path, monkeypatch, empty_store):
    env = dict(os.environ)
    password = None
    sweep_dir = tmp_path / "sweep"
    for line in doc_commands():
        if f" {TEAM} start " in line or f" {TEAM} stop " in line:
            continue  # the store's fixture runs them
        line = team.text(line.replace(PASSWORD_SHOWN, password or PASSWORD_SHOWN))
        words = shlex.split(line)
        if words[0] == "export":
            env.update(word.split("=", 1) for word in words[1:])
            continue
        args = words[3:]
        if words[2] == "grubench":
            if "+experiment=search_gru" in args:
                args += TINY_SEARCH
            elif "-m" in args:
                args += [*TINY_SWEEP, f"hydra.sweep.dir={sweep_dir}"]
            else:
                args += TINY
                anonymous = tmp_path / "anonymous"  # without a user: the page's refusal, nothing made
                anonymous.mkdir()
                refused = main_command(args, anonymous)
                assert refused.returncode == 1 and refused.stderr.strip() == team.text(doc_refusal()), refused.stderr
                assert list(anonymous.iterdir()) == []
        done = command(words[2], args, tmp_path, {k: v for k, v in env.items() if k.startswith(("MLFLOW", "PG"))})
        assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-3000:])
        printed = done.stdout + done.stderr
        assert "View run" not in printed and "View experiment" not in printed, printed
        if " user " in line:
            password = re.search(r"MLFLOW_TRACKING_PASSWORD=(\S+)", done.stdout).group(1)
        if words[2] == "grubench" and "-m" not in args:
            assert f"  browse: {team.uri}/#/experiments/" in done.stdout, done.stdout
            assert "tracking.uri" not in done.stdout  # no part of the run's name
            (tmp_path / "sqlite").mkdir()  # the same command on SQLite prints the same lines, the link aside
            shutil.copy(empty_store, tmp_path / "sqlite" / "mlflow.db")
            local = main_command([a for a in args if not a.startswith("tracking.uri=")], tmp_path / "sqlite")
            assert shape(done.stdout + done.stderr, team, tmp_path) == \
                shape(local.stdout + local.stderr, team, tmp_path / "sqlite")
    assert password is not None

    client = team.client(monkeypatch)
    parent, jobs = children(client, "default")
    assert parent.info.status == "FINISHED" and len(jobs) == 4
    assert "tracking.uri" not in parent.info.run_name and all("tracking" not in j.info.run_name for j in jobs)
    for job in jobs:
        assert job.info.status == "FINISHED" and job.info.artifact_uri.startswith("mlflow-artifacts:")
        files = {a.path for a in client.list_artifacts(job.info.run_id)} | \
            {a.path for a in client.list_artifacts(job.info.run_id, "checkpoints")}
        assert {"config.yaml", "grubench.log", "checkpoints/best.ckpt"} <= files, files
        assert len(client.get_metric_history(job.info.run_id, "val/mse")) == 1
    search, trials = children(client, "search_gru")
    assert search.info.status == "FINISHED" and len(trials) == 2


@pytest.mark.slow
def test_a_run_killed_with_kill_9_is_reaped_and_resumed_over_http(team, tmp_path, monkeypatch):
    args = [*SHORT, f"tracking.uri={team.uri}", "tracking.experiment=resume", f"hydra.run.dir={tmp_path / 'job'}"]
    killed = subprocess.run([sys.executable, "-c", KILL_AT.format(epoch=2, batch=3), *args], cwd=tmp_path,
                            env={**os.environ, **team.env}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    client = team.client(monkeypatch)
    (run,) = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert run.info.status == "RUNNING"

    reaped = command("grubench.harness.reap", [f"tracking.uri={team.uri}", "--experiment", "resume"], tmp_path, team.env)
    assert reaped.returncode == 0, reaped.stderr
    assert client.get_run(run.info.run_id).info.status == "FAILED"  # by this reap, or the page's (all experiments)
    resumed = main_command([f"resume={run.info.run_id}", f"tracking.uri={team.uri}"], tmp_path, team.env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resumed"] == "1"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/mse")]
    assert len(steps) == 4 and len(set(steps)) == 4  # every epoch once
    assert "test/mse" in run.data.metrics


# A search worker that SIGKILLs itself in the second batch of its first trial when KILL_AT names
# a file (it writes the time of the kill there first).
KILL_WORKER = """
import os, signal, time
from grubench.task import SequenceTask
step = SequenceTask.training_step
def training_step(self, batch, batch_idx):
    if os.environ.get("KILL_AT") and batch_idx == 1:
        with open(os.environ["KILL_AT"], "w") as f:
            f.write(str(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, batch, batch_idx)
SequenceTask.training_step = training_step
from grubench.__main__ import main
main()
"""


@pytest.mark.slow
def test_three_workers_share_one_search_and_a_killed_workers_trial_runs_again(team, tmp_path, monkeypatch):
    n_trials = 4
    args = ["-m", "hydra/sweeper=grubench_optuna", "+model=gru", *TINY, "dataset.batch_size=16",
            f"tracking.uri={team.uri}", "tracking.experiment=shared", "hydra.sweeper.study_name=shared",
            f"hydra.sweeper.storage={team.storage}", f"hydra.sweeper.n_trials={n_trials}",
            "++hydra.sweeper.heartbeat_interval=1", f"hydra.sweep.dir={tmp_path / 'search'}",
            "++hydra.sweeper.params={optim.lr:{type:float,low:1e-3,high:1e-2,log:true}}"]
    env = {**os.environ, **team.env, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    kill_at = tmp_path / "killed_at"
    workers = [subprocess.Popen([sys.executable, "-c", KILL_WORKER, *args], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**env, "KILL_AT": str(kill_at)} if number == 0 else env)
               for number in range(3)]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    said = "\n-- next worker --\n".join(output[-3000:] for output in outputs)
    assert [w.returncode for w in workers] == [-signal.SIGKILL, 0, 0], said

    client = team.client(monkeypatch)  # PGPASSFILE too
    study = optuna.load_study(study_name="shared", storage=team.storage)
    states = [t.state.name for t in study.trials if not t.user_attrs.get("surplus")]
    assert states.count("COMPLETE") == n_trials and states.count("FAIL") == 1, states
    (dead,) = [t for t in study.trials if t.state.name == "FAIL" and not t.user_attrs.get("surplus")]
    (again,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert again.state.name == "COMPLETE" and again.params == dead.params
    killed = datetime.fromtimestamp(float(kill_at.read_text()))
    print(f"\nworker killed {killed:%H:%M:%S.%f}; trial {dead.number} failed by a heartbeat "
          f"{(dead.datetime_complete - killed).total_seconds():.1f} s later, rerun as trial {again.number} "
          f"{(again.datetime_start - killed).total_seconds():.1f} s after the kill, completed "
          f"{(again.datetime_complete - killed).total_seconds():.1f} s after it")

    assert command("grubench.harness.reap", [f"tracking.uri={team.uri}", "--experiment", "shared"], tmp_path,
                   team.env).returncode == 0
    parent, trials = children(client, "shared")
    assert parent.info.status == "FINISHED"
    assert sorted(int(r.data.tags["sweep/job"]) for r in trials) == sorted(
        t.number for t in study.trials if not t.user_attrs.get("surplus"))
    by_job = {int(r.data.tags["sweep/job"]): r.info.status for r in trials}
    assert by_job[dead.number] == "FAILED" and list(by_job.values()).count("FINISHED") == n_trials
    running = client.search_runs([parent.info.experiment_id], "attributes.status = 'RUNNING'")
    assert running == []


def pgpass_password(team: Team) -> str:
    return Path(team.folder, "pgpass").read_text().strip().rsplit(":", 1)[1]


@pytest.mark.slow
def test_eight_runs_at_once_lose_no_metric_point(team, monkeypatch, tmp_path):
    from grubench.harness.runs import tracked_run
    from grubench.harness.store import Store

    for key, value in team.env.items():
        monkeypatch.setenv(key, value)
    store = Store.open(team.uri, "load")
    steps, names = 25, [f"m{k}" for k in range(5)]
    ids: list[str] = []
    note = tmp_path / "note.txt"
    note.write_text("a small artifact\n")

    def one_run(number: int) -> None:
        with tracked_run(store, f"load-{number}", {"load": number}) as run:
            ids.append(run.id)
            run.log_params({f"p{k}": k for k in range(50)})
            for step in range(steps):
                run.log_metrics({name: number + step / steps for name in names}, step=step)
            run.log_artifact(note)

    began = time.monotonic()
    threads = [threading.Thread(target=one_run, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - began
    client = MlflowClient(team.uri)
    found = 0
    for run_id in ids:
        assert client.get_run(run_id).info.status == "FINISHED"
        for name in names:
            history = client.get_metric_history(run_id, name)
            assert sorted(m.step for m in history) == list(range(steps)), (run_id, name)
            found += len(history)
    sent = 8 * steps * len(names)
    print(f"\n8 runs at once: {sent} metric points sent, {found} found, {took:.1f} s")
    assert len(ids) == 8 and found == sent


@pytest.mark.slow
def test_a_sweep_survives_a_server_restart_and_a_store_down_at_start_is_one_line(team_alone, tmp_path,
                                                                                monkeypatch):
    from grubench.harness import team as team_command

    team = team_alone
    settings = team_command.read_settings(Path(team.folder))
    # PostgreSQL down: the server answers, but cannot read its store; so does an Optuna storage there
    team_command.as_db_user([str(team_command.postgres_bin() / "pg_ctl"), "stop", "-w", "-m", "fast", "-D",
                             f"{team.folder}/postgres"], settings, Path(team.folder))
    try:
        down = tmp_path / "down"
        down.mkdir()
        refused = main_command(["+model=gru", *TINY, f"tracking.uri={team.uri}"], down, team.env)
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "the server answers but fails" in refused.stderr and "is its database up?" in refused.stderr
        search = main_command(["-m", "hydra/sweeper=grubench_optuna", "+model=gru", f"tracking.uri={down}/x.db",
                               f"hydra.sweeper.storage={team.storage}",
                               "++hydra.sweeper.params={optim.lr:{type:float,low:1e-3,high:1e-2}}"], down, team.env)
        assert search.returncode == 1 and search.stderr.startswith(
            f"grubench: error: cannot open the Optuna storage {team.storage}: "), search.stderr
        assert list(down.iterdir()) == []  # nothing made
    finally:
        team_command.start_postgres(Path(team.folder), settings, settings)

    client = team.client(monkeypatch)
    events: dict[str, float] = {}

    def restart_mid_run() -> None:
        """Once both jobs have logged an epoch: stop the store, try a command, start it again."""
        deadline = time.monotonic() + 240
        while True:
            found = client.get_experiment_by_name("restart")
            runs = client.search_runs([found.experiment_id], "metrics.`val/mse` > -1") if found else []
            if len([r for r in runs if r.info.status == "RUNNING"]) == 2:
                break
            if time.monotonic() > deadline:
                events["refused"] = f"the jobs never ran together: {[(r.info.status, r.info.run_name) for r in runs]}"
                return
            time.sleep(0.3)
        events["stop"] = time.time()
        team_run = [sys.executable, "-m", TEAM]
        subprocess.run([*team_run, "stop", team.folder], check=True, capture_output=True)
        try:
            check_store(team.uri)  # what every command checks first (each refusal's command: test_refusals)
        except TrackingError as error:
            events["refused"] = str(error)
        subprocess.run([*team_run, "start", team.folder], check=True, capture_output=True)
        events["back"] = time.time()

    restarter = threading.Thread(target=restart_mid_run)
    restarter.start()
    swept = main_command(["-m", "+model=gru", *TINY_SWEEP, "trainer.max_epochs=20", "trainer.limit_val_batches=1",
                          "seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                          f"tracking.uri={team.uri}", "tracking.experiment=restart",
                          f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, team.env)
    restarter.join()
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert events["refused"].startswith(f"tracking.uri={team.uri}: no MLflow server answers there"), events
    parent, jobs = children(client, "restart")
    assert parent.info.status == "FINISHED" and len(jobs) == 2
    for job in jobs:
        assert job.info.status == "FINISHED"
        assert job.info.start_time / 1000 < events["stop"] and job.info.end_time / 1000 > events["back"]  # across it
        assert len(client.get_metric_history(job.info.run_id, "val/mse")) == 20
    print(f"\nserver away for {events['back'] - events['stop']:.1f} s (stopped, then started)")
    reaped = command("grubench.harness.reap", [f"tracking.uri={team.uri}", "--experiment", "restart"], tmp_path,
                     team.env)
    assert reaped.returncode == 0
    assert client.search_runs([parent.info.experiment_id], "attributes.status = 'RUNNING'") == []


@pytest.mark.slow
def test_basic_auth_refuses_a_wrong_password_and_no_run_records_one(team, tmp_path, monkeypatch):
    wrong = main_command(["+model=gru", *TINY, f"tracking.uri={team.uri}"], tmp_path,
                         {**team.env, "MLFLOW_TRACKING_PASSWORD": "not-the-password"})
    assert wrong.returncode == 1 and wrong.stderr.strip() == (
        f"grubench: error: tracking.uri={team.uri}: the server refused user tester (wrong password, or no such "
        "user): check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"), wrong.stderr
    assert list(tmp_path.iterdir()) == []

    # the password in the URI: shown redacted, recorded nowhere
    with_password = team.uri.replace("http://", f"http://tester:{team.password}@")
    done = main_command(["+model=gru", *TINY, f"tracking.uri={with_password}", "tracking.experiment=secret",
                         "verbose=true"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert team.password not in done.stdout + done.stderr and "tester:***@" not in done.stdout  # not in its name
    client = team.client(monkeypatch)
    (run,) = client.search_runs([client.get_experiment_by_name("secret").experiment_id])
    assert run.data.params["tracking/uri"] == team.uri.replace("http://", "http://tester:***@")
    # every run of the store, whoever wrote it: params, tags, name, and every text artifact
    secrets = [team.password, pgpass_password(team)]
    everything = client.search_runs([e.experiment_id for e in client.search_experiments()])
    for found in everything:
        record = json.dumps([found.info.run_name, found.data.params, found.data.tags])
        assert not any(secret in record for secret in secrets), found.info.run_id
        for artifact in client.list_artifacts(found.info.run_id):
            if artifact.path.endswith((".yaml", ".log", ".txt")):
                text = Path(client.download_artifacts(found.info.run_id, artifact.path, str(tmp_path))).read_text()
                assert not any(secret in text for secret in secrets), (found.info.run_id, artifact.path)
    assert len(everything) >= 1
    print(f"\nthe team store took {team.start_s:.1f} s to start")


# ---- without a server (quick pass)

def test_a_password_in_a_url_is_redacted_and_a_server_uri_gives_its_credentials_to_mlflow(monkeypatch):
    from grubench.harness.quiet import redact
    from grubench.harness.store import resolve_uri

    assert redact("tracking.uri=http://ann:s3cr%40t@host:5000/x and postgresql+psycopg://u:pw@db:5433/optuna") == \
        "tracking.uri=http://ann:***@host:5000/x and postgresql+psycopg://u:***@db:5433/optuna"
    assert redact("http://host:5000 http://ann@host") == "http://host:5000 http://ann@host"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "")  # put back as they were once the test ends
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "")
    assert resolve_uri("http://ann:s3cr%40t@host:5000") == "http://host:5000"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("ann", "s3cr@t")
    assert resolve_uri("https://host/mlflow") == "https://host/mlflow"


def test_a_run_records_no_password(store, tmp_path):
    from grubench.harness.runs import tracked_run
    from grubench.harness.store import Store

    uri = "http://ann:s3cret@host:5000"
    (tmp_path / "config.yaml").write_text(f"tracking:\n  uri: {uri}\n")
    opened = Store.open(store, "default")
    with tracked_run(opened, f"sweep tracking.uri={uri}", {"overrides": f"tracking.uri={uri}"}) as run:
        run.log_params({"tracking/uri": uri})
        run.set_tags({"note": uri})
        run.log_artifact(tmp_path / "config.yaml")
    client = MlflowClient(store)
    found = client.get_run(run.id)
    assert "s3cret" not in json.dumps([found.info.run_name, found.data.params, found.data.tags])
    assert found.data.params["tracking/uri"] == "http://ann:***@host:5000"
    logged = Path(client.download_artifacts(run.id, "config.yaml", str(tmp_path / "down"))).read_text()
    assert logged == "tracking:\n  uri: http://ann:***@host:5000\n"
    assert "s3cret" in (tmp_path / "config.yaml").read_text()  # the file itself is left as it was


def test_an_experiment_another_worker_makes_at_the_same_moment_is_used(store):
    """Over HTTP no lock orders the workers of a shared search: one may create the experiment
    between another's look and its own create."""
    from grubench.harness.store import ensure_experiment

    client = MlflowClient(store)
    made = client.create_experiment("raced")  # by the other worker, just after this one looked
    looks, look = [], client.get_experiment_by_name

    def first_look_misses(name):
        looks.append(name)
        return None if len(looks) == 1 else look(name)

    client.get_experiment_by_name = first_look_misses
    assert ensure_experiment(client, "raced", "http://host:5000") == made


@pytest.mark.parametrize("code, body, env, said", [
    (401, b"", {}, "the server asks who you are: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
    (401, b"", {"MLFLOW_TRACKING_USERNAME": "ann", "MLFLOW_TRACKING_PASSWORD": "no"},
     "the server refused user ann (wrong password, or no such user): check MLFLOW_TRACKING_USERNAME and "
     "MLFLOW_TRACKING_PASSWORD"),
    (503, b'{"message": "(psycopg.OperationalError) connection failed\\nmore"}', {},
     "the server answers but fails (HTTP 503: (psycopg.OperationalError) connection failed); is its database up?"),
    (404, b"", {}, "no MLflow server answers there (HTTP 404 for its search API)"),
])
def test_a_server_that_refuses_is_said_in_one_line(code, body, env, said, monkeypatch):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from grubench.harness.store import check_store

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(code)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(TrackingError) as refused:
            check_store(uri)
    finally:
        server.shutdown()
    assert str(refused.value) == f"tracking.uri={uri}: {said}"


def test_a_shared_study_counts_trials_that_run_again_once_and_stops_at_n_trials(tmp_path):
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from grubench.harness.search import RETRY_OF, counted, surplus, taken

    space = {"x": FloatDistribution(0, 1)}
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s")
    done = [create_trial(state=TrialState.COMPLETE, value=0.5, params={"x": 0.5}, distributions=space)] * 2
    for trial in done:
        study.add_trial(trial)  # 0, 1
    study.add_trial(create_trial(state=TrialState.FAIL, params={"x": 0.1}, distributions=space))  # 2: its worker died
    study.add_trial(create_trial(state=TrialState.FAIL, params={"x": 0.2}, distributions=space))  # 3: stopped
    study.enqueue_trial({"x": 0.2}, user_attrs={RETRY_OF: 3})  # 4, WAITING
    study.add_trial(create_trial(state=TrialState.WAITING, params={"x": 0.1}, distributions=space,
                                 system_attrs={"failed_trial": 2, "retry_history": [2]}))  # 5, as Optuna queues it
    assert counted(study) == 2 and taken(study) == 2  # 2 and 3 run again as 4 and 5
    first, second = study.ask(space), study.ask(space)  # the queued ones, first
    assert {first.number, second.number} == {4, 5} and taken(study) == 4
    assert not surplus(study, second, n_trials=5)
    late = study.ask(space)  # 6: a fifth trial stands, a sixth asked at the same moment does not
    assert not surplus(study, late, n_trials=5) and surplus(study, study.ask(space), n_trials=5)
