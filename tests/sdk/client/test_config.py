"""Where the client's settings come from: arguments, then the environment, then the login file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from flowdeck import config
from flowdeck.config import ConfigError, read_config_file, resolve_settings, write_config_file


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("FLOWDECK_HOME", str(home))
    for name in ("FLOWDECK_API_URL", "FLOWDECK_API_KEY", "FLOWDECK_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_login_file_is_private_and_round_trips(isolated_home: Path) -> None:
    path = write_config_file(api_url="https://fd.example.com", api_key='fd_k"ey\\x', workspace="acme")
    assert path == isolated_home / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(isolated_home.stat().st_mode) == 0o700
    assert read_config_file() == {"api_url": "https://fd.example.com", "api_key": 'fd_k"ey\\x', "workspace": "acme"}
    # No temporary file is left next to it.
    assert [p.name for p in isolated_home.iterdir()] == ["config.toml"]


def test_rewriting_the_file_keeps_it_private(isolated_home: Path) -> None:
    write_config_file(api_url="https://a.example.com", api_key="k1", workspace=None)
    path = write_config_file(api_url="https://b.example.com", api_key="k2", workspace=None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_config_file() == {"api_url": "https://b.example.com", "api_key": "k2"}


def test_arguments_beat_environment_beat_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write_config_file(api_url="https://file.example.com", api_key="file-key", workspace="file-ws")
    assert resolve_settings() == config.Settings("https://file.example.com", "file-key", "file-ws")

    monkeypatch.setenv("FLOWDECK_API_URL", "https://env.example.com/")
    monkeypatch.setenv("FLOWDECK_API_KEY", "env-key")
    settings = resolve_settings()
    assert (settings.api_url, settings.api_key, settings.workspace) == ("https://env.example.com", "env-key", "file-ws")

    monkeypatch.setenv("FLOWDECK_WORKSPACE", "env-ws")
    settings = resolve_settings(api_url="http://arg.example.com/api/v1", workspace="arg-ws")
    assert (settings.api_url, settings.api_key, settings.workspace) == ("http://arg.example.com", "env-key", "arg-ws")


def test_missing_url_or_key_says_how_to_configure() -> None:
    with pytest.raises(ConfigError, match="FLOWDECK_API_URL.*flowdeck login"):
        resolve_settings()
    with pytest.raises(ConfigError, match="FLOWDECK_API_KEY.*flowdeck login"):
        resolve_settings(api_url="https://x.example.com")


def test_a_broken_file_is_a_clear_error(isolated_home: Path) -> None:
    isolated_home.mkdir()
    (isolated_home / "config.toml").write_text("[default\napi_url = ")
    with pytest.raises(ConfigError, match="not valid TOML.*flowdeck login"):
        resolve_settings()


def test_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="http:// or https://"):
        resolve_settings(api_url="fd.example.com", api_key="k")
