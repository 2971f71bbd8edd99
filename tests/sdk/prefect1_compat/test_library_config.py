"""``flowdeck.config`` is Prefect 1's ``prefect.config``: nested settings with attribute access,
from defaults and ``FLOWDECK__SECTION__KEY`` variables (values parsed to bools and numbers), while
``from flowdeck import config`` still reaches the SDK's connection helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import flowdeck
from flowdeck import Flow, task
from flowdeck.config import Config, load_config, set_temporary_config, string_to_type


def test_environment_variables_become_nested_settings() -> None:
    config = load_config({
        "FLOWDECK__TASKS__DEFAULTS__MAX_RETRIES": "4",
        "FLOWDECK__LOGGING__LEVEL": "DEBUG",
        "FLOWDECK__MY_APP__RATIO": "0.25",
        "FLOWDECK__MY_APP__ENABLED": "TRUE",
        "FLOWDECK__MY_APP__NAME": "warehouse",
        "FLOWDECK__MY_APP__HOSTS": "['a', 'b']",
        "FLOWDECK__CONTEXT__SECRETS__My_Token": "s3cr3t",
        "FLOWDECK_API_URL": "https://not-a-config-key.example.com",  # one underscore: not a config key
        "OTHER__X": "1",
    })
    assert config.tasks.defaults.max_retries == 4
    assert config["tasks"]["defaults"]["max_retries"] == 4
    assert config.logging.level == "DEBUG"
    assert config.my_app.ratio == 0.25 and config.my_app.enabled is True and config.my_app.name == "warehouse"
    assert config.my_app.hosts == ["a", "b"]
    assert config.context.secrets == {"My_Token": "s3cr3t"}  # secret names keep their case
    assert "flowdeck_api_url" not in config and "api_url" not in config
    assert isinstance(config.my_app, Config)
    assert config.get_nested("my_app.name") == "warehouse" and config.get_nested("my_app.nope", 7) == 7
    with pytest.raises(AttributeError, match="no setting 'missing'"):
        _ = config.missing


def test_defaults_reflect_the_sdk_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWDECK_HOME", str(tmp_path))
    monkeypatch.setenv("FLOWDECK_LOGGING_LEVEL", "warning")
    monkeypatch.delenv("FLOWDECK_RESULTS_DIR", raising=False)
    monkeypatch.delenv("FLOWDECK_CHECKPOINTING", raising=False)
    config = load_config({})
    assert config.debug is False
    assert config.home_dir == str(tmp_path)
    assert config.results.dir == str(tmp_path / "results")
    assert config.logging.level == "WARNING"
    assert config.flows.checkpointing is False
    assert load_config({"FLOWDECK__DEBUG": "true", "FLOWDECK__FLOWS__CHECKPOINTING": "True"}).flows.checkpointing


def test_deeper_keys_win_and_values_parse_like_prefect() -> None:
    config = load_config({"FLOWDECK__SECTION": "plain", "FLOWDECK__SECTION__KEY": "1"})
    assert config.section == {"key": 1}
    assert [string_to_type(v) for v in ("true", "False", "12", "-3", "1e3", "0.5", "(1, 2)", "{'a': 1}")] == [
        True, False, 12, -3, 1000.0, 0.5, (1, 2), {"a": 1}]
    assert [string_to_type(v) for v in ("yes", "", "[not python", "12abc", "INFO")] == [
        "yes", "", "[not python", "12abc", "INFO"]


def test_the_package_config_is_built_from_the_process_environment(tmp_path: Path) -> None:
    script = (
        "import flowdeck\n"
        "c = flowdeck.config\n"
        "print(c.team.size + 1, c.team.remote, c.logging.level, c.flows.checkpointing)\n"
        "from flowdeck import config\n"
        "print(config is c, isinstance(c, flowdeck.config.Config))\n"
    )
    env = {**os.environ, "FLOWDECK__TEAM__SIZE": "41", "FLOWDECK__TEAM__REMOTE": "false",
           "FLOWDECK__LOGGING__LEVEL": "ERROR", "FLOWDECK_CHECKPOINTING": "on"}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["42", "False", "ERROR", "True", "True", "True"]


def test_reload_and_temporary_config_change_the_live_object(monkeypatch: pytest.MonkeyPatch) -> None:
    config = flowdeck.config
    monkeypatch.setenv("FLOWDECK__PIPELINE__BATCH", "500")
    config.reload()
    try:
        assert config.pipeline.batch == 500
        with set_temporary_config({"pipeline.batch": 10, "flows.checkpointing": True, "new.key": "x"}) as live:
            assert live is config
            assert config.pipeline.batch == 10 and config.flows.checkpointing is True and config.new.key == "x"
        assert config.pipeline.batch == 500 and "new" not in config
    finally:
        monkeypatch.delenv("FLOWDECK__PIPELINE__BATCH")
        config.reload()
    assert "pipeline" not in config


def test_flows_checkpointing_from_the_environment_checkpoints_flow_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @task
    def seven() -> int:
        return 7

    with Flow("checkpointed") as flow:
        s = seven()
    monkeypatch.setenv("FLOWDECK_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv("FLOWDECK_CHECKPOINTING", raising=False)
    assert flow.run().result[s].result_ref is None  # off by default in flow.run()
    monkeypatch.setenv("FLOWDECK__FLOWS__CHECKPOINTING", "true")  # Prefect 1's PREFECT__FLOWS__CHECKPOINTING
    ref = flow.run().result[s].result_ref
    assert ref is not None and (tmp_path / ref).is_file()
    monkeypatch.setenv("FLOWDECK_CHECKPOINTING", "off")  # Flowdeck's own variable wins
    assert flow.run().result[s].result_ref is None


def test_from_flowdeck_import_config_still_reaches_the_connection_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowdeck import config

    monkeypatch.setenv("FLOWDECK_HOME", str(tmp_path))
    for name in ("FLOWDECK_API_URL", "FLOWDECK_API_KEY", "FLOWDECK_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    assert config.ENV_API_URL == "FLOWDECK_API_URL"
    config.write_config_file(api_url="https://flowdeck.example.com", api_key="fd_key", workspace="acme")
    assert config.resolve_settings() == config.Settings("https://flowdeck.example.com", "fd_key", "acme")
    with pytest.raises(config.ConfigError):
        config.normalize_api_url("ftp://nope")
    config.plain = {"a": 1}  # setting a key turns mappings into sections
    try:
        assert config.plain.a == 1
    finally:
        del config.plain


def test_context_config_is_the_config_inside_and_outside_a_run():
    import flowdeck
    from flowdeck import Flow, task

    seen = []

    @task
    def read():
        seen.append(flowdeck.context.config)
        return flowdeck.context.get("config").flows.checkpointing

    with Flow("ctx-config") as flow:
        read()
    state = flow.run()
    assert state.is_successful()
    assert seen == [flowdeck.config]
    assert flowdeck.context.config is flowdeck.config
    assert flowdeck.context["config"] is flowdeck.config
