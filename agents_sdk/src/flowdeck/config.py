"""Where the SDK finds the server, the API key and the workspace.

Precedence, highest first: explicit arguments, then the environment (``FLOWDECK_API_URL``,
``FLOWDECK_API_KEY``, ``FLOWDECK_WORKSPACE``), then the config file written by ``flowdeck login``:
``$FLOWDECK_HOME/config.toml`` (``FLOWDECK_HOME`` defaults to ``~/.flowdeck``). The file holds a
secret, so it is written with mode 0600 in a directory with mode 0700.

Where task results are checkpointed: ``FLOWDECK_RESULTS_DIR`` (default ``$FLOWDECK_HOME/results``);
``FLOWDECK_CHECKPOINTING`` turns the default checkpointing on or off (on in flow runs an agent
starts, off in ``flow.run()``).

``flowdeck.config`` (Prefect 1's ``prefect.config``) is a ``Config`` object, not this module: nested
settings with attribute access (``flowdeck.config.flows.checkpointing``), built from defaults and
``FLOWDECK__SECTION__KEY`` environment variables (see ``load_config``). ``from flowdeck import config``
still reaches this module's helpers through it (``config.resolve_settings(...)``); code inside the
SDK imports them from ``flowdeck.config`` directly.
"""

from __future__ import annotations

import ast
import os
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowdeck.client.errors import FlowdeckError

ENV_API_URL = "FLOWDECK_API_URL"
ENV_API_KEY = "FLOWDECK_API_KEY"
ENV_WORKSPACE = "FLOWDECK_WORKSPACE"
ENV_HOME = "FLOWDECK_HOME"
ENV_RESULTS_DIR = "FLOWDECK_RESULTS_DIR"
ENV_CHECKPOINTING = "FLOWDECK_CHECKPOINTING"
ENV_LOGGING_LEVEL = "FLOWDECK_LOGGING_LEVEL"
# ``flowdeck.config`` keys from the environment: FLOWDECK__SECTION__KEY (Prefect 1's PREFECT__…).
ENV_CONFIG_PREFIX = "FLOWDECK__"
ENV_FLOWS_CHECKPOINTING = "FLOWDECK__FLOWS__CHECKPOINTING"
CONFIG_FILE_NAME = "config.toml"


class ConfigError(FlowdeckError):
    """The SDK is not configured well enough to reach a server (no URL, no key, unreadable file,
    unknown workspace)."""

    def __init__(self, message: str, *, code: str = "not_configured") -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True)
class Settings:
    """Resolved connection settings; ``workspace`` may still be unknown (discovered from the key)."""

    api_url: str
    api_key: str
    workspace: str | None


def flowdeck_home() -> Path:
    """The SDK's own directory: ``$FLOWDECK_HOME`` or ``~/.flowdeck``."""
    override = os.environ.get(ENV_HOME)
    return Path(override).expanduser() if override else Path.home() / ".flowdeck"


def results_dir() -> Path:
    """Where results are checkpointed when neither the task nor its flow names a ``Result``:
    ``$FLOWDECK_RESULTS_DIR`` (point it at storage every agent mounts to let a retry on another
    machine reuse them), else ``$FLOWDECK_HOME/results``."""
    override = os.environ.get(ENV_RESULTS_DIR)
    return Path(override).expanduser() if override else flowdeck_home() / "results"


def checkpointing(default: bool) -> bool:
    """``$FLOWDECK_CHECKPOINTING`` as a flag (1/true/yes/on or 0/false/no/off), else
    ``$FLOWDECK__FLOWS__CHECKPOINTING`` (Prefect 1's ``flows.checkpointing`` setting), else ``default``."""
    value = (os.environ.get(ENV_CHECKPOINTING) or os.environ.get(ENV_FLOWS_CHECKPOINTING) or "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return default


def config_path() -> Path:
    return flowdeck_home() / CONFIG_FILE_NAME


def read_config_file(path: Path | None = None) -> dict[str, str]:
    """The ``[default]`` table of the config file as strings (empty when there is no file)."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"Cannot read the Flowdeck config file {path}: {exc.strerror}.") from None
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The Flowdeck config file {path} is not valid TOML ({exc}); "
                          "run `flowdeck login` again to rewrite it.") from None
    table = data.get("default", {})
    if not isinstance(table, dict):
        raise ConfigError(f"The Flowdeck config file {path} has no [default] table; run `flowdeck login` again.")
    return {str(k): str(v) for k, v in table.items() if isinstance(v, str) and v}


def _toml_string(value: str) -> str:
    """A TOML basic string (the values are URLs, keys and slugs: escaping quotes, backslashes and
    control characters is all they can need)."""
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def write_config_file(*, api_url: str, api_key: str, workspace: str | None, path: Path | None = None) -> Path:
    """Write the login settings (0600, directory 0700), replacing any earlier file atomically."""
    path = path or config_path()
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    lines = ["# Written by `flowdeck login`. Holds an API key: keep it private (mode 0600).", "[default]",
             f"api_url = {_toml_string(api_url)}", f"api_key = {_toml_string(api_key)}"]
    if workspace:
        lines.append(f"workspace = {_toml_string(workspace)}")
    # Create the temporary file 0600 from the start so the key is never readable by others.
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def normalize_api_url(url: str) -> str:
    """The server's base URL without a trailing slash or ``/api/v1`` suffix (both are accepted)."""
    url = url.strip().rstrip("/")
    for suffix in ("/api/v1", "/api"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"The Flowdeck API URL must start with http:// or https:// (got {url!r}).")
    return url


def resolve_settings(api_url: str | None = None, api_key: str | None = None, workspace: str | None = None) -> Settings:
    """Apply the precedence (arguments > environment > config file); a clear ConfigError when the URL
    or the key is missing."""
    file_values: dict[str, str] | None = None

    def from_file(name: str) -> str | None:
        nonlocal file_values
        if file_values is None:
            file_values = read_config_file()
        return file_values.get(name)

    url = api_url or os.environ.get(ENV_API_URL) or from_file("api_url")
    key = api_key or os.environ.get(ENV_API_KEY) or from_file("api_key")
    slug = workspace or os.environ.get(ENV_WORKSPACE) or from_file("workspace")
    if not url:
        raise ConfigError(f"No Flowdeck server configured: set {ENV_API_URL}, pass api_url, "
                          "or run `flowdeck login --url URL --key KEY`.")
    if not key:
        raise ConfigError(f"No Flowdeck API key configured: set {ENV_API_KEY}, pass api_key, "
                          "or run `flowdeck login --url URL --key KEY`.")
    return Settings(api_url=normalize_api_url(url), api_key=key.strip(), workspace=slug or None)


# --- flowdeck.config: Prefect 1's ``prefect.config`` ------------------------------------------------


class Config(dict[str, Any]):
    """Nested settings with attribute access: ``config.flows.checkpointing`` is
    ``config["flows"]["checkpointing"]``; sections are ``Config`` objects too."""

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: attributes read keys.
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"flowdeck.config has no setting {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = _as_config(value)

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"<Config: {', '.join(sorted(self))}>"

    def get_nested(self, key: str, default: Any = None) -> Any:
        """The value at a dotted key (``"flows.checkpointing"``), else ``default``."""
        value: Any = self
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return default
            value = value[part]
        return value

    def set_nested(self, key: str, value: Any) -> None:
        """Set a dotted key, creating the sections on the way (a plain value in the way is replaced)."""
        *sections, last = key.split(".")
        target: Config = self
        for part in sections:
            child = target.get(part)
            if not isinstance(child, Config):
                child = Config()
                target[part] = child
            target = child
        target[last] = _as_config(value)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts (a deep copy)."""
        return {k: v.to_dict() if isinstance(v, Config) else v for k, v in self.items()}


def _as_config(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, Config):
        return Config({str(k): _as_config(v) for k, v in value.items()})
    return value


def string_to_type(value: str) -> Any:
    """An environment variable's text as the value it spells: ``true``/``false`` (any case) as bools,
    integers, floats, and Python list/tuple/dict/set literals; anything else stays a string."""
    text = value.strip()
    if text.lower() == "true":
        return True
    if text.lower() == "false":
        return False
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    if text[:1] in ("[", "(", "{") and "\n" not in text:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pass
    return value


def _env_key(name: str) -> str | None:
    """The dotted config key of a ``FLOWDECK__A__B`` variable: lower case, except what follows
    ``context.secrets`` (secret names keep their case, as in Prefect 1)."""
    parts = name[len(ENV_CONFIG_PREFIX):].split("__")
    if not all(parts):
        return None
    lowered = [p.lower() for p in parts]
    keep = 2 if lowered[:2] == ["context", "secrets"] else len(parts)
    return ".".join(lowered[:keep] + parts[keep:])


def default_settings() -> dict[str, Any]:
    """The defaults ``load_config`` starts from: the settings the SDK reads from its ``FLOWDECK_*``
    variables as they are now, under Prefect 1's names where Prefect 1 has the same setting."""
    return {
        "debug": False,
        "home_dir": str(flowdeck_home()),
        "logging": {"level": (os.environ.get(ENV_LOGGING_LEVEL) or "INFO").upper()},
        "flows": {"checkpointing": checkpointing(default=False)},
        "results": {"dir": str(results_dir())},
        "context": {"secrets": {}},
    }


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """A fresh ``Config``: ``default_settings()`` overlaid with every ``FLOWDECK__SECTION__KEY``
    variable of ``environ`` (default ``os.environ``), values parsed with ``string_to_type``.
    Shallower keys are applied first, so ``FLOWDECK__A__B`` wins over a plain ``FLOWDECK__A``."""
    environ = os.environ if environ is None else environ
    config = Config()
    for key, value in default_settings().items():
        config[key] = _as_config(value)
    keyed: list[tuple[str, str]] = []
    for name, value in environ.items():
        dotted = _env_key(name) if name.startswith(ENV_CONFIG_PREFIX) else None
        if dotted is not None:
            keyed.append((dotted, value))
    for key, value in sorted(keyed, key=lambda item: (item[0].count("."), item[0])):
        config.set_nested(key, string_to_type(value))
    return config


# ``from flowdeck import config`` gives the Config object (as ``from prefect import config`` does);
# code written when it gave this module reads these helpers through it.
_MODULE_HELPERS = frozenset({
    "ENV_API_URL", "ENV_API_KEY", "ENV_WORKSPACE", "ENV_HOME", "ENV_RESULTS_DIR", "ENV_CHECKPOINTING",
    "ENV_LOGGING_LEVEL", "ENV_CONFIG_PREFIX", "ENV_FLOWS_CHECKPOINTING", "CONFIG_FILE_NAME", "ConfigError",
    "Settings", "flowdeck_home", "results_dir", "checkpointing", "config_path", "read_config_file",
    "write_config_file", "normalize_api_url", "resolve_settings", "load_config", "string_to_type",
    "set_temporary_config", "Config",
})


class _RootConfig(Config):
    """``flowdeck.config``: a ``Config`` whose missing attributes fall back to this module's helpers."""

    def __getattr__(self, name: str) -> Any:
        if name in self:
            return self[name]
        if name in _MODULE_HELPERS:
            return globals()[name]
        raise AttributeError(f"flowdeck.config has no setting {name!r}")

    def reload(self, environ: Mapping[str, str] | None = None) -> None:
        """Rebuild in place from the defaults and the environment (references stay valid)."""
        fresh = load_config(environ)
        self.clear()
        self.update(fresh)


config = _RootConfig(load_config())


@contextmanager
def set_temporary_config(settings: Mapping[str, Any]) -> Iterator[Config]:
    """Set dotted keys (``{"flows.checkpointing": True}``) on ``flowdeck.config`` for a ``with``
    block; the previous values come back after it (Prefect 1's
    ``prefect.utilities.configuration.set_temporary_config``)."""
    saved = Config({k: _as_config(v.to_dict()) if isinstance(v, Config) else v for k, v in config.items()})
    try:
        for key, value in settings.items():
            config.set_nested(key, value)
        yield config
    finally:
        config.clear()
        config.update(saved)
