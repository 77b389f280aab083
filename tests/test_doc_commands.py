"""Every `python -m grubench ...` and `python -m grubench.bench ...` command shown in the README
and docs/ composes as written and passes the config checks (a sweep: its first job); the
README's examples of refused commands print what the README says they print."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser

from grubench.config import check
from tests.cli import main_command

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^\s{4,}(?:\$ )?python -m (grubench(?:\.bench)?)((?:\s+\S.*)?)$")
FLAGS_WITH_VALUE = ("--config-dir", "-cd", "--config-name", "-cn")


def commands() -> list[tuple[str, str, list[str]]]:
    """(where, module, arguments) of every command in an indented block of the docs."""
    found = []
    for doc in DOCS:
        text = re.sub(r"\\\n\s*", " ", doc.read_text())  # a command continued on the next line
        for number, line in enumerate(text.splitlines(), 1):
            match = COMMAND.match(line)
            if match:
                args = shlex.split(match.group(2).split(" # ")[0].split("  #")[0])
                if "$ python" not in line:  # `$ python ...` shows a refused command and its answer
                    found.append((f"{doc.name}:{number}", match.group(1), args))
    return found


def first_job(args: list[str]) -> list[str]:
    """The overrides of a sweep's first job (`a=1,2` -> `a=1`); flags dropped."""
    overrides, skip = [], False
    for arg in args:
        if skip or arg in FLAGS_WITH_VALUE:
            skip = not skip
            continue
        if arg.startswith("-"):
            continue
        parsed = OverridesParser.create().parse_override(arg)
        if parsed.is_sweep_override():
            value = next(parsed.sweep_string_iterator())
            arg = f"{arg.split('=', 1)[0]}={value}"
        overrides.append(arg)
    return overrides


DOC_COMMANDS = [c for c in commands() if "--config-dir" not in c[2] and "--help" not in c[2]]


def test_the_docs_show_commands():
    assert len(DOC_COMMANDS) >= 20


@pytest.mark.parametrize("where,module,args", DOC_COMMANDS, ids=[c[0] for c in DOC_COMMANDS])
def test_a_documented_command_composes_and_passes_the_checks(where, module, args):
    # Hydra's own settings (sweeper, launcher) are not part of the composed job config.
    overrides = [o for o in first_job(args) if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    with initialize_config_module(config_module="grubench.conf", version_base="1.3"):
        cfg = compose(config_name="bench" if module == "grubench.bench" else "config", overrides=overrides)
    if module == "grubench" and (cfg.get("model") is not None or cfg.get("resume")):
        check(cfg)


def test_the_readme_refusals_print_what_the_readme_says(tmp_path):
    text = (ROOT / "README.md").read_text()
    examples = re.findall(r"^    \$ python -m grubench(.*)\n    (grubench: error: .*)$", text, re.MULTILINE)
    assert len(examples) >= 2
    for args, said in examples:
        result = main_command(shlex.split(args), tmp_path)
        assert result.returncode == 1 and result.stderr.strip() == said, (args, result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_help_lists_this_commands_choices_only(tmp_path):
    result = main_command(["--help"], tmp_path)
    assert result.returncode == 0
    assert "+model: gru, gru_doc" in result.stdout and "dataset: adding, arrays, chorales" in result.stdout
    assert "grid" not in result.stdout and "_base" not in result.stdout  # the bench's grids, the shared bases
