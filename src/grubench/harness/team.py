"""`python -m grubench.harness.team`: a team's tracking store on one machine, all of it in one folder.

    python -m grubench.harness.team start FOLDER [--port 5000] [--db-port 5433] [--host 127.0.0.1] [--auth]
    python -m grubench.harness.team user FOLDER NAME     # with --auth: a user who may write, and a password
    python -m grubench.harness.team stop FOLDER

`start` makes, the first time, a PostgreSQL cluster in FOLDER/postgres with the databases
`mlflow` (runs), `optuna` (searches shared by many workers) and `mlflow_auth` (users, with
--auth), then starts PostgreSQL on --db-port and MLflow's own server (`mlflow server`) on --port,
its artifacts proxied into FOLDER/artifacts (`--artifacts-destination`), both bound to --host.
It prints the `tracking.uri=` to give every command, the Optuna storage for shared searches, and
how to stop it. A later `start` keeps the data and the settings of the first unless given again.
Arguments after `--` go to `mlflow server` as they are (`-- --allowed-hosts mlflow.example.org:5000`).

What FOLDER holds:

    team.json           the settings (host, ports, auth) and the server's process id
    postgres/           the cluster; postgres.log its log
    pgpass              the database user's password (PostgreSQL's password file: PGPASSFILE=FOLDER/pgpass)
    artifacts/          every run's files, written by the server
    server.log          the server's log
    basic_auth.ini      with --auth: MLflow's basic-auth settings, the admin's password among them

PostgreSQL refuses to run as root: started by root, its programs run as the user `postgres`
(Debian's package makes it; `--db-user` names another), who must be able to reach FOLDER.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from grubench.errors import GrubenchError
from grubench.harness.command import run_command

DB_USER = "grubench"          # the database role MLflow and Optuna connect as
DATABASES = ("mlflow", "optuna", "mlflow_auth")
DEFAULTS = {"host": "127.0.0.1", "port": 5000, "db_port": 5433, "workers": 1, "auth": False}
START_TIMEOUT_S = 180         # the server imports MLflow's whole app: 10-20 s on a busy 2-core machine
STOP_TIMEOUT_S = 30


class TeamError(GrubenchError):
    """The team store cannot be started, stopped or changed; said in one line."""


def settings_path(folder: Path) -> Path:
    return folder / "team.json"


def read_settings(folder: Path) -> dict:
    """The saved settings (team.json), {} before the first start."""
    path = settings_path(folder)
    return json.loads(path.read_text()) if path.is_file() else {}


def write_settings(folder: Path, settings: dict) -> None:
    settings_path(folder).write_text(json.dumps(settings, indent=2) + "\n")


def postgres_bin() -> Path:
    """The folder of PostgreSQL's server programs: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not found:
        raise TeamError("no PostgreSQL server programs (initdb, pg_ctl) on PATH or in /usr/lib/postgresql: "
                        "install PostgreSQL (Debian: apt-get install postgresql-15)")
    return found[-1].parent


def db_os_user(settings: dict) -> str | None:
    """The system user PostgreSQL runs as: None (this one) unless this is root, who may not run it."""
    if os.geteuid() != 0:
        return None
    name = settings.get("db_user") or "postgres"
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise TeamError(f"PostgreSQL does not run as root and there is no user {name!r} to run it: "
                        "create one, or name one with --db-user") from None
    return name


def as_db_user(command: list[str], settings: dict, folder: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run one of PostgreSQL's programs as the user it runs as; TeamError with its last line when it fails."""
    user = db_os_user(settings)
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, user=user,
                          group=pwd.getpwnam(user).pw_gid if user else None, extra_groups=[] if user else None)
    if check and done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
        raise TeamError(f"{Path(command[0]).name} failed: {said}")
    return done


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def local_address(host: str) -> str:
    """Where this machine reaches a service bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def public_address(host: str) -> str:
    """Where other machines reach a service bound to `host`."""
    return socket.getfqdn() if host in ("0.0.0.0", "::", "") else host


def password_file(folder: Path) -> Path:
    return folder / "pgpass"


def db_password(folder: Path) -> str:
    return password_file(folder).read_text().strip().rsplit(":", 1)[1]


def db_url(settings: dict, database: str) -> str:
    """A database of the cluster as SQLAlchemy names it; the password comes from PGPASSFILE."""
    return f"postgresql+psycopg://{DB_USER}@{local_address(settings['host'])}:{settings['db_port']}/{database}"


def init_cluster(folder: Path, settings: dict) -> None:
    """Make the cluster in FOLDER/postgres: the role `grubench` with a new password, which the
    cluster asks for on every TCP connection (scram-sha-256)."""
    data = folder / "postgres"
    data.mkdir(mode=0o700)
    password = secrets.token_urlsafe(24)
    # The password file as libpq reads it (host:port:database:user:password); only its owner may read it.
    password_file(folder).touch(mode=0o600)
    password_file(folder).write_text(f"*:*:*:{DB_USER}:{password}\n")
    pwfile = data.parent / ".initdb-password"
    pwfile.write_text(password + "\n")
    user = db_os_user(settings)
    for path in (data, pwfile, folder / "postgres.log"):
        path.touch(exist_ok=True)
        if user:
            shutil.chown(path, user)
    try:
        as_db_user([str(postgres_bin() / "initdb"), "-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"],
                   settings, folder)
    finally:
        pwfile.unlink()
    with (data / "pg_hba.conf").open("a") as hba:  # other machines too, when --host lets them reach it
        hba.write("host all all all scram-sha-256\n")


def postgres_running(folder: Path, settings: dict) -> bool:
    done = as_db_user([str(postgres_bin() / "pg_ctl"), "status", "-D", str(folder / "postgres")], settings, folder,
                      check=False)
    return done.returncode == 0


def start_postgres(folder: Path, settings: dict, saved: dict) -> None:
    """Start the cluster, unless it runs already: then on the host and port it was started with."""
    if postgres_running(folder, settings):
        settings.update(host=saved.get("host", settings["host"]), db_port=saved.get("db_port", settings["db_port"]))
        return
    if not port_free(local_address(settings["host"]), settings["db_port"]):
        raise TeamError(f"port {settings['db_port']} is taken: choose another with --db-port")
    # No Unix socket: every connection goes over TCP, with the password.
    options = f"-p {settings['db_port']} -c listen_addresses={settings['host']} -c unix_socket_directories=''"
    as_db_user([str(postgres_bin() / "pg_ctl"), "start", "-w", "-D", str(folder / "postgres"),
                "-l", str(folder / "postgres.log"), "-o", options], settings, folder)


def create_databases(folder: Path, settings: dict) -> None:
    import psycopg

    try:
        with psycopg.connect(host=local_address(settings["host"]), port=settings["db_port"], user=DB_USER,
                             password=db_password(folder), dbname="postgres", autocommit=True) as connection:
            existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
            for name in DATABASES:
                if name not in existing:
                    connection.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as error:
        raise TeamError(f"cannot reach PostgreSQL on port {settings['db_port']}: {str(error).strip().splitlines()[0]}") \
            from None


def write_auth_config(folder: Path, settings: dict) -> Path:
    """MLflow's basic-auth settings (FOLDER/basic_auth.ini, only its owner may read it): users in
    the database `mlflow_auth`, an admin with a new password, and every user may write (EDIT):
    a team shares its experiments."""
    path = folder / "basic_auth.ini"
    if not path.is_file():
        path.touch(mode=0o600)
        path.write_text("[mlflow]\n"
                        "default_permission = EDIT\n"
                        f"database_uri = {db_url(settings, 'mlflow_auth')}\n"
                        "admin_username = admin\n"
                        f"admin_password = {secrets.token_urlsafe(18)}\n"
                        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                        # a password checked once a minute per server process, not on every request
                        # (each check hashes it: about 0.3 s of CPU)
                        "auth_cache_ttl_seconds = 60\n")
    return path


def admin_credentials(folder: Path) -> tuple[str, str]:
    import configparser

    config = configparser.ConfigParser()
    config.read(folder / "basic_auth.ini")
    return config["mlflow"]["admin_username"], config["mlflow"]["admin_password"]


def server_alive(settings: dict) -> bool:
    """Whether the server process team.json names is still an `mlflow server`."""
    pid = settings.get("server_pid")
    try:
        return bool(pid) and b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def start_server(folder: Path, settings: dict, extra: list[str]) -> int:
    """Start `mlflow server` on the cluster, detached from this command; its process id once it answers."""
    address = local_address(settings["host"])
    if not port_free(address, settings["port"]):
        raise TeamError(f"port {settings['port']} is taken: choose another with --port")
    (folder / "artifacts").mkdir(exist_ok=True)
    env = {**os.environ, "PGPASSFILE": str(password_file(folder)),
           # MLflow's job runner serves GenAI evaluation jobs: not needed to track runs, and a
           # process of its own
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    command = [str(Path(sys.executable).with_name("mlflow")), "server",
               "--backend-store-uri", db_url(settings, "mlflow"),
               "--artifacts-destination", str(folder / "artifacts"),
               "--host", settings["host"], "--port", str(settings["port"]), "--workers", str(settings["workers"])]
    if settings["auth"]:
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(write_auth_config(folder, settings))
        # one key for all the server's workers, so that a form one of them sent passes another's CSRF check
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32))
        command += ["--app-name", "basic-auth"]
    with (folder / "server.log").open("a") as log:
        server = subprocess.Popen([*command, *extra], cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    health = f"http://{address}:{settings['port']}/health"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise TeamError(f"mlflow server ended (exit {server.returncode}): {last_error(folder / 'server.log')} "
                            f"(its log: {folder / 'server.log'})")
        try:
            urllib.request.urlopen(health, timeout=2).close()
            return server.pid
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    stop_server(server.pid)
    raise TeamError(f"mlflow server did not answer within {START_TIMEOUT_S} s (its log: {folder / 'server.log'})")


def last_error(log: Path) -> str:
    """The last error a log names (a line `SomeError: ...`), else its last line."""
    lines = log.read_text(errors="replace").strip().splitlines() or ["no output"]
    errors = [line for line in lines if re.match(r"[\w.]+(Error|Exception): ", line)]
    return (errors or lines)[-1]


def stop_server(pid: int) -> None:
    """SIGTERM to the server's process group (the server and its workers), SIGKILL if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it when this process started it
        except ChildProcessError:
            pass
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)


def start(folder: Path, given: dict, extra: list[str]) -> None:
    """Make the store in `folder` if it is new, start PostgreSQL and the server, say how to use them.
    `given`: the settings given now (None: as saved, else DEFAULTS); `extra`: mlflow server's own options."""
    folder.mkdir(parents=True, exist_ok=True)
    saved = read_settings(folder)
    if server_alive(saved):
        raise TeamError(f"the team store in {folder} is running (server pid {saved['server_pid']}); "
                        f"stop it first: python -m grubench.harness.team stop {folder}")
    settings = {**DEFAULTS, **saved, **{key: value for key, value in given.items() if value is not None}}
    settings.pop("server_pid", None)
    write_settings(folder, settings)
    began = time.monotonic()
    if not (folder / "postgres").is_dir():
        init_cluster(folder, settings)
    start_postgres(folder, settings, saved)
    create_databases(folder, settings)
    settings["server_pid"] = start_server(folder, settings, extra)
    write_settings(folder, settings)
    address = f"http://{public_address(settings['host'])}:{settings['port']}"
    storage = db_url({**settings, "host": public_address(settings["host"])}, "optuna")
    lines = [f"team store running in {folder} ({time.monotonic() - began:.0f} s to start): MLflow server at {address}, "
             f"PostgreSQL on port {settings['db_port']}",
             f"  runs:     tracking.uri={address}",
             f"  searches: hydra.sweeper.storage={storage}   with PGPASSFILE={password_file(folder)}"]
    if settings["auth"]:
        lines.append("  users:    set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; add one with "
                     f"python -m grubench.harness.team user {folder} NAME (the admin's password is in "
                     f"{folder / 'basic_auth.ini'})")
    lines.append(f"  stop:     python -m grubench.harness.team stop {folder}")
    print("\n".join(lines))


def stop(folder: Path) -> None:
    """Stop the server and PostgreSQL of the store in `folder`; its data stay."""
    settings = read_settings(folder)
    if not settings:
        raise TeamError(f"no team store in {folder} (no team.json)")
    stopped = []
    if server_alive(settings):
        stop_server(settings["server_pid"])
        stopped.append(f"MLflow server (pid {settings['server_pid']})")
    if (folder / "postgres").is_dir() and postgres_running(folder, settings):
        as_db_user([str(postgres_bin() / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(folder / "postgres")],
                   settings, folder)
        stopped.append("PostgreSQL")
    settings.pop("server_pid", None)
    write_settings(folder, settings)
    print(f"stopped {' and '.join(stopped) if stopped else 'nothing (it was not running)'}; the data stay in {folder}")


def add_user(folder: Path, name: str) -> None:
    """A user of a store started with --auth, with a new password (MLflow's users/create, as the admin)."""
    # imported here: MLflow's client, which only this subcommand needs
    from grubench.harness.store import basic_auth

    settings = read_settings(folder)
    if not settings.get("auth") or not server_alive(settings):
        raise TeamError(f"no team store with --auth is running in {folder}")
    password = secrets.token_urlsafe(12)
    request = urllib.request.Request(
        f"http://{local_address(settings['host'])}:{settings['port']}/api/2.0/mlflow/users/create",
        data=json.dumps({"username": name, "password": password}).encode(),
        headers={"Content-Type": "application/json", **basic_auth(*admin_credentials(folder))})
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError as error:
        said = json.loads(error.read() or b"{}").get("message", f"HTTP {error.code}")
        raise TeamError(f"cannot add user {name}: {said.strip().splitlines()[0]}") from None
    print(f"user {name} added; they set\n  export MLFLOW_TRACKING_USERNAME={name} MLFLOW_TRACKING_PASSWORD={password}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grubench.harness.team", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start", help="start the team store (made in FOLDER the first time)")
    begin.add_argument("folder", type=Path)
    begin.add_argument("--host", help="the address both listen on (default 127.0.0.1: this machine only; "
                                      "0.0.0.0: every network this machine is on)")
    begin.add_argument("--port", type=int, help="the MLflow server's port (default 5000)")
    begin.add_argument("--db-port", type=int, help="PostgreSQL's port (default 5433)")
    begin.add_argument("--workers", type=int, help="the server's worker processes (default 1)")
    begin.add_argument("--auth", action=argparse.BooleanOptionalAction, default=None,
                       help="MLflow's basic auth: only users with a password may read or write (kept for later starts)")
    begin.add_argument("--db-user", help="the system user PostgreSQL runs as when started by root (default postgres)")
    end = commands.add_parser("stop", help="stop the server and PostgreSQL; the data stay")
    end.add_argument("folder", type=Path)
    user = commands.add_parser("user", help="add a user to a store started with --auth; prints their password")
    user.add_argument("folder", type=Path)
    user.add_argument("name")
    parser.epilog = "start FOLDER ... -- OPTIONS: OPTIONS go to mlflow server as they are"
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:len(argv) - len(extra) - 1] if "--" in argv else argv)
    folder = args.folder.expanduser().resolve()
    if args.command == "start":
        start(folder, {"host": args.host, "port": args.port, "db_port": args.db_port, "workers": args.workers,
                       "auth": args.auth, "db_user": args.db_user}, extra)
    elif args.command == "stop":
        stop(folder)
    else:
        add_user(folder, args.name)
    return 0


if __name__ == "__main__":
    run_command("grubench.harness.team", main)
