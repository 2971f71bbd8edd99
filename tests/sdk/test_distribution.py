"""The SDK is its own distribution (`flowdeck`): it installs, imports without Django or the server,
has a working console script, and builds into a wheel that installs into a clean environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

import flowdeck

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / "agents_sdk"
BIN = Path(sys.executable).parent
SERVER_PACKAGES = ("django", "config", "core", "accounts", "orchestration", "billing", "frontend")


def run(*args: str | Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # Plain output whatever the caller's terminal settings (CI may set FORCE_COLOR).
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS")}
    env.update(NO_COLOR="1", TERM="dumb", COLUMNS="100")
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def uv() -> str:
    found = shutil.which("uv", path=str(BIN)) or shutil.which("uv")
    if found is None:
        pytest.fail("uv is needed to build the SDK wheel (scripts/test installs it into .venv)")
    return found


def test_import_pulls_in_no_django_and_no_server_module(tmp_path: Path) -> None:
    # Run outside the repository so that the server packages are not importable by accident.
    check = (
        "import flowdeck, sys; "
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {SERVER_PACKAGES!r}); "
        "assert not bad, bad; "
        "assert not any(m.startswith('django') for m in sys.modules)"
    )
    result = run(sys.executable, "-c", check, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_installed_version_matches_the_package() -> None:
    assert metadata.version("flowdeck") == flowdeck.__version__
    assert not any(req.lower().startswith("django") for req in metadata.requires("flowdeck") or [])


def test_console_script_help(tmp_path: Path) -> None:
    result = run(BIN / "flowdeck", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert "version" in result.stdout


def test_console_script_version(tmp_path: Path) -> None:
    result = run(BIN / "flowdeck", "version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"flowdeck {flowdeck.__version__}"

    result = run(BIN / "flowdeck", "--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"flowdeck {flowdeck.__version__}"


def test_module_entry_point(tmp_path: Path) -> None:
    result = run(sys.executable, "-m", "flowdeck", "version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert flowdeck.__version__ in result.stdout


def test_unknown_command_is_a_clear_error(tmp_path: Path) -> None:
    result = run(BIN / "flowdeck", "no-such-command", cwd=tmp_path)
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_wheel_builds_and_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    result = run(uv(), "build", "--wheel", SDK, "-o", dist, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    wheels = list(dist.glob("flowdeck-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    assert wheel.name.startswith(f"flowdeck-{flowdeck.__version__}-py3-none-any")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "flowdeck/__init__.py" in names
        assert "flowdeck/py.typed" in names
        assert not any(n.startswith(("tests/", "src/")) for n in names)
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = zf.read(meta_name).decode()
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert "Name: flowdeck" in meta
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    # The base install is light; executors and container agents come with extras.
    base = [r for r in requires if "extra ==" not in r]
    assert {r.split()[1].split(">")[0].split("=")[0].split("[")[0].lower() for r in base} == {
        "httpx",
        "pydantic",
        "typer",
        "rich",
        "websockets",
        "pendulum",
    }
    extras = {line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Provides-Extra:")}
    assert {"dask", "docker", "kubernetes", "viz", "all"} <= extras
    assert "flowdeck = flowdeck.cli:main" in entry_points

    venv = tmp_path / "venv"
    result = run(uv(), "venv", "--python", sys.executable, venv, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    python = venv / "bin" / "python"
    result = run(uv(), "pip", "install", "--python", python, wheel, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr

    result = run(venv / "bin" / "flowdeck", "version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"flowdeck {flowdeck.__version__}"
    # The commands the README and the web app show are there, with their help.
    result = run(venv / "bin" / "flowdeck", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert all(command in result.stdout for command in ("register", "run", "runs", "agent")), result.stdout
    # Installed from the wheel alone, without Django anywhere in that environment.
    check = (
        "import importlib.util, flowdeck; "
        "assert importlib.util.find_spec('django') is None; "
        "print(flowdeck.__file__)"
    )
    result = run(python, "-c", check, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(venv) in result.stdout
