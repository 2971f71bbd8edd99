"""The `flowdeck` commands the web app tells people to run work as shown after `scripts/start`.

`scripts/start` installs the SDK with `fd_sdk_install` (scripts/lib.sh). Here that same function
installs it into a new, empty virtual environment, and every `flowdeck …` command the web app's
source shows (empty states, the agent command after a key is created) is checked against the
installed CLI: the command exists (`--help` answers), each option it names is one the command
takes, and the environment variables it sets are the ones the SDK reads. Reading the strings from
the source makes this fail as soon as the UI and the CLI drift apart.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "frontend" / "app" / "src"
UV = Path(sys.executable).parent / "uv"

# `flowdeck` then its sub-command words, then options (`--label …`), up to the end of the snippet.
COMMAND = re.compile(r"\bflowdeck((?: [a-z][a-z-]*)+)((?: --[a-z][a-z-]*(?: [^\s<`'\"{}$-][^\s<`'\"{}]*)?)*)")
ENV_ASSIGNMENT = re.compile(r"\b(FLOWDECK_[A-Z_]+)=")


def _shown_commands() -> dict[tuple[str, ...], set[str]]:
    """Every `flowdeck …` command in the web app's source: sub-command words → options named."""
    found: dict[tuple[str, ...], set[str]] = {}
    for path in sorted(SOURCE.rglob("*.tsx")):
        for match in COMMAND.finditer(path.read_text()):
            words = tuple(match.group(1).split())
            options = set(re.findall(r"--[a-z][a-z-]*", match.group(2)))
            found.setdefault(words, set()).update(options)
    return found


def _shown_env_names() -> set[str]:
    return {name for path in SOURCE.rglob("*.tsx") for name in ENV_ASSIGNMENT.findall(path.read_text())}


@pytest.fixture(scope="module")
def fresh_cli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the SDK installed by the start script's own step."""
    venv = tmp_path_factory.mktemp("start-venv") / "venv"
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(["bash", "-c", 'source scripts/lib.sh && fd_sdk_install "$1"', "fd", str(venv / "bin" / "python")],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return venv / "bin"


def test_the_start_script_installs_the_sdk_before_serving() -> None:
    lines = [line.strip() for line in (ROOT / "scripts" / "start").read_text().splitlines()]
    steps = [line for line in lines if line and not line.startswith("#")]
    assert "fd_sdk_install" in steps
    serve = next(i for i, line in enumerate(steps) if line.startswith("exec "))
    assert steps.index("fd_sdk_install") < serve


def test_the_web_app_shows_the_commands_a_new_user_needs() -> None:
    shown = _shown_commands()
    assert ("register",) in shown
    assert ("agent", "start") in shown and "--label" in shown[("agent", "start")]
    assert {"FLOWDECK_API_URL", "FLOWDECK_API_KEY"} <= _shown_env_names()


def test_every_command_the_web_app_shows_exists_as_shown(fresh_cli: Path) -> None:
    flowdeck = fresh_cli / "flowdeck"
    assert flowdeck.exists(), "fd_sdk_install did not put `flowdeck` in the environment's bin directory"
    top = subprocess.run([str(flowdeck), "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0, top.stderr
    for words, options in _shown_commands().items():
        helped = subprocess.run([str(flowdeck), *words, "--help"], capture_output=True, text=True, timeout=60,
                                env={"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
        assert helped.returncode == 0, f"`flowdeck {' '.join(words)} --help` failed: {helped.stderr}"
        for option in options:
            assert re.search(rf"{option}\b", helped.stdout), f"`flowdeck {' '.join(words)}` has no {option}"


def test_the_environment_variables_shown_are_the_ones_the_sdk_reads(fresh_cli: Path) -> None:
    read = subprocess.run(
        [str(fresh_cli / "python"), "-c",
         "from flowdeck import config; print(config.ENV_API_URL, config.ENV_API_KEY, config.ENV_WORKSPACE)"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()
    assert _shown_env_names() <= set(read)
