"""Where the SDK finds the server, the API key and the workspace.

Precedence, highest first: explicit arguments, then the environment (``FLOWDECK_API_URL``,
``FLOWDECK_API_KEY``, ``FLOWDECK_WORKSPACE``), then the config file written by ``flowdeck login``:
``$FLOWDECK_HOME/config.toml`` (``FLOWDECK_HOME`` defaults to ``~/.flowdeck``). The file holds a
secret, so it is written with mode 0600 in a directory with mode 0700.

Where task results are checkpointed: ``FLOWDECK_RESULTS_DIR`` (default ``$FLOWDECK_HOME/results``);
``FLOWDECK_CHECKPOINTING`` turns the default checkpointing on or off (on in flow runs an agent
starts, off in ``flow.run()``).
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from flowdeck.client.errors import FlowdeckError

ENV_API_URL = "FLOWDECK_API_URL"
ENV_API_KEY = "FLOWDECK_API_KEY"
ENV_WORKSPACE = "FLOWDECK_WORKSPACE"
ENV_HOME = "FLOWDECK_HOME"
ENV_RESULTS_DIR = "FLOWDECK_RESULTS_DIR"
ENV_CHECKPOINTING = "FLOWDECK_CHECKPOINTING"
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
    """``$FLOWDECK_CHECKPOINTING`` as a flag (1/true/yes/on or 0/false/no/off), else ``default``."""
    value = (os.environ.get(ENV_CHECKPOINTING) or "").strip().lower()
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
