"""The ``flowdeck`` command line.

Commands: ``login``, ``register``, ``flows list``, ``run``, ``runs list|submit|show|logs|cancel``,
``agents list``, ``alerts list``, ``agent …`` (running an agent) and ``version``. Every command has ``--help``; every
command that prints data takes ``--output json`` (plain JSON on stdout and nothing else; messages and
errors go to stderr).

Settings come from ``FLOWDECK_API_URL``, ``FLOWDECK_API_KEY``, ``FLOWDECK_WORKSPACE`` or the file that
``flowdeck login`` writes (``$FLOWDECK_HOME/config.toml``, default ``~/.flowdeck/config.toml``).

Exit codes (scripts can rely on them):

====  ==========================================================================================
0     success; for ``run --watch``: the run ended COMPLETED
1     the server refused the request (invalid input, conflict …); ``run --watch``: FAILED or CRASHED
2     wrong usage (unknown command or option, bad ``--param``)
3     not configured or not allowed: no URL/key, the key was refused (401), lacks the role (403), or
      the plan does not allow it (402)
4     not found (no such flow, run …, or not visible to this key)
5     the server could not be reached, kept failing (5xx) or rate-limited the client (``run --watch``
      never gives up while it follows a run: it says so and keeps trying)
6     ``run --watch``: the run was CANCELLED
130   interrupted (Ctrl-C); a watched run keeps running on its agent
====  ==========================================================================================
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import json
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from flowdeck import __version__
from flowdeck.agent.cli import agent_app
from flowdeck.cli_output import console, err_console, hide_flag_types, print_table, steps
from flowdeck.client import (
    AuthenticationError,
    Client,
    FlowdeckError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitedError,
    ServerUnavailableError,
)
from flowdeck.config import ConfigError, write_config_file

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_NOT_FOUND = 4
EXIT_UNAVAILABLE = 5
EXIT_CANCELLED = 6
EXIT_INTERRUPTED = 130
# ``run --watch``: the run's final state → exit code (never 2, which is wrong usage).
RUN_EXIT_CODES = {"COMPLETED": EXIT_OK, "FAILED": EXIT_ERROR, "CRASHED": EXIT_ERROR, "CANCELLED": EXIT_CANCELLED}
TERMINAL_STATES = frozenset(RUN_EXIT_CODES)
# ``run --watch`` while the server is unreachable: the longest wait between two tries (seconds).
WATCH_MAX_RETRY_SECONDS = 5.0

EXIT_CODES_HELP = (
    "Exit codes: 0 success (run --watch: COMPLETED); 1 request refused (run --watch: FAILED or CRASHED); "
    "2 wrong usage; 3 not configured / key refused / not allowed; 4 not found; "
    "5 server unreachable or failing; 6 run --watch: CANCELLED; 130 interrupted."
)

app = typer.Typer(
    name="flowdeck",
    help="Flowdeck SDK and agent: register flows and run them in your own infrastructure.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
flows_app = typer.Typer(help="Registered flows.", no_args_is_help=True)
runs_app = typer.Typer(help="Flow runs: list, submit many, show, follow logs, cancel.", no_args_is_help=True)
agents_app = typer.Typer(help="Agents registered in the workspace.", no_args_is_help=True)
alerts_app = typer.Typer(help="SLA alerts (incidents) of the workspace.", no_args_is_help=True)
app.add_typer(flows_app, name="flows")
app.add_typer(runs_app, name="runs")
app.add_typer(agents_app, name="agents")
app.add_typer(alerts_app, name="alerts")
app.add_typer(agent_app, name="agent")

hide_flag_types()


class Output(enum.StrEnum):
    text = "text"
    json = "json"


OUTPUT_OPTION = typer.Option(Output.text, "--output", "-o", help="text for people, json for scripts.")


# --- plumbing -----------------------------------------------------------------------------------


def _exit_code_for(exc: FlowdeckError) -> int:
    if isinstance(exc, (ConfigError, AuthenticationError, PermissionDeniedError, PaymentRequiredError)):
        return EXIT_CONFIG
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, (ServerUnavailableError, RateLimitedError)):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


def _fail(message: str, code: int) -> NoReturn:
    err_console.print(f"Error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Client errors → a message on stderr and the documented exit code."""
    try:
        yield
    except FlowdeckError as exc:
        _fail(str(exc), _exit_code_for(exc))
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _client() -> Client:
    return Client(retries=3)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _short(value: Any, width: int = 8) -> str:
    return str(value or "")[:width]


def _when(value: Any) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM:SS' (server times are UTC)."""
    text = str(value or "")
    return text[:19].replace("T", " ") if text else "-"


# --- root, version, login -----------------------------------------------------------------------


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"flowdeck {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
    ),
) -> None:
    """Flowdeck SDK and agent: register flows and run them in your own infrastructure."""


@app.command()
def version(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print the Python version and platform."),
) -> None:
    """Print the installed flowdeck version."""
    typer.echo(f"flowdeck {__version__}")
    if verbose:
        typer.echo(f"Python {platform.python_version()} on {platform.platform()}")


@app.command()
def login(
    url: str = typer.Option(..., "--url", help="The Flowdeck server, e.g. https://flowdeck.example.com"),
    key: str = typer.Option(..., "--key", prompt="API key", hide_input=True, help="An API key (fd_…)."),
    workspace: str | None = typer.Option(None, "--workspace", "-w",
                                         help="Workspace slug (default: the key's workspace)."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Check an API key against the server and save the settings for later commands.

    The settings go to $FLOWDECK_HOME/config.toml (default ~/.flowdeck/config.toml), readable only by
    you (mode 0600). Environment variables FLOWDECK_API_URL / FLOWDECK_API_KEY / FLOWDECK_WORKSPACE
    still take precedence over the file.
    """
    with _errors():
        client = Client(url, key, workspace, retries=2)
        me = client.me()
        slugs = [str(w.get("slug")) for w in me.get("workspaces", [])]
        if workspace is not None and workspace not in slugs:
            _fail(f"This key does not belong to workspace '{workspace}' (it can use: {', '.join(slugs) or 'none'}).",
                  EXIT_CONFIG)
        chosen = workspace or client.workspace
        user = me.get("user") or {}
        who = user.get("email") if isinstance(user, dict) and user.get("email") else "a service account"
        path = write_config_file(api_url=client.api_url, api_key=key, workspace=chosen)
    if output is Output.json:
        _print_json({"api_url": client.api_url, "workspace": chosen, "user": me.get("user"), "config": str(path)})
        return
    console.print(f"Logged in to {client.api_url} as {who}, workspace '{chosen}'.", markup=False)
    console.print(f"Settings saved to {path} (mode 0600).", markup=False)


# --- register -----------------------------------------------------------------------------------


def _import_flows_from(target: str) -> tuple[list[Any], str]:
    """Import a Python file or module and return the Flow objects it defines (in definition order)."""
    from flowdeck.core.flow import Flow

    path = Path(target)
    if path.suffix == ".py" or path.is_file():
        if not path.is_file():
            raise typer.BadParameter(f"No such file: {target}")
        path = path.resolve()
        # Let the file import its neighbours, as `python file.py` would.
        sys.path.insert(0, str(path.parent))
        # A name the engine recognises as "loaded from a file", so the flow's storage is the file.
        module_name = f"__flowdeck_register_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise typer.BadParameter(f"Cannot import {target} as Python.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        where = str(path)
    else:
        sys.path.insert(0, str(Path.cwd()))
        module = importlib.import_module(target)
        where = target
    flows = [value for value in vars(module).values() if isinstance(value, Flow)]
    return list(dict.fromkeys(flows)), where  # a flow bound to two names counts once


@app.command()
def register(
    target: str = typer.Argument(..., help="A Python file (path/to/flows.py) or module (package.flows)."),
    project: str = typer.Option("default", "--project", "-p", help="Project to register into (created if needed)."),
    name: Annotated[list[str] | None, typer.Option("--name", "-n",
                                                   help="Only the flow(s) with this name (repeatable).")] = None,
    output: Output = OUTPUT_OPTION,
) -> None:
    """Register the flows defined in a file or module (metadata only, never code).

    Unchanged metadata keeps its version; a change makes a new version. The SLA policies a flow
    declares (Flow(sla=[...])) are created or updated, and those it no longer declares removed.
    """
    with _errors():
        try:
            flows, where = _import_flows_from(target)
        except typer.BadParameter:
            raise
        except Exception as exc:  # the user's code failed to import: show why
            _fail(f"Could not import {target}: {type(exc).__name__}: {exc}", EXIT_ERROR)
        if name:
            missing = sorted(set(name) - {f.name for f in flows})
            if missing:
                _fail(f"No flow named {', '.join(repr(m) for m in missing)} in {where} "
                      f"(found: {', '.join(repr(f.name) for f in flows) or 'none'}).", EXIT_NOT_FOUND)
            flows = [f for f in flows if f.name in name]
        if not flows:
            _fail(f"No Flow objects found in {where}: define them at module level (with Flow(...) as flow: …).",
                  EXIT_NOT_FOUND)
        client = _client()
        results = []
        # A big flow takes a while to serialize and upload: say what is going on (on a terminal).
        with steps(f"Registering {len(flows)} flow(s)", total=len(flows)) as progress:
            for flow in flows:
                progress.describe(f"Serializing flow '{flow.name}'")
                try:
                    metadata = flow.serialize()
                except Exception as exc:
                    _fail(f"Flow {flow.name!r} cannot be serialized: {exc}", EXIT_ERROR)
                progress.describe(f"Registering flow '{flow.name}' ({len(metadata.get('tasks', []))} tasks)")
                version_data, created = client.register_flow(project=project, name=flow.name, metadata=metadata)
                results.append({"flow": flow.name, "project": project, "flow_id": version_data["flow"],
                                "version": version_data["version"], "version_id": version_data["id"],
                                "created": created,
                                "sla_policies": [p["name"] for p in metadata.get("sla_policies", [])]})
                progress.advance()
    if output is Output.json:
        _print_json(results)
        return
    for item in results:
        what = "registered as new version" if item["created"] else "unchanged, still version"
        # The server makes the flow's SLA policies match the declared ones on every registration.
        policies = f"; SLA policies: {', '.join(item['sla_policies'])}" if item["sla_policies"] else ""
        console.print(f"Flow '{item['flow']}' in project '{item['project']}': {what} {item['version']} "
                      f"(flow id {item['flow_id']}){policies}", markup=False, soft_wrap=True)


# --- flows --------------------------------------------------------------------------------------


@flows_app.command("list")
def flows_list(
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project (name or id)."),
    name: str | None = typer.Option(None, "--name", "-n", help="Only flows with this name."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """List registered flows."""
    with _errors():
        flows = _client().list_flows(project=project, name=name)
    if output is Output.json:
        _print_json(flows)
        return
    if not flows:
        console.print("No flows registered yet: `flowdeck register path/to/flows.py`.")
        return
    print_table(("NAME", "PROJECT", "ID", "CREATED"),
                [(flow["name"], flow.get("project_name", ""), flow["id"], _when(flow.get("created_at")))
                 for flow in flows])


# --- run ----------------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parameters(params: list[str], params_json: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except ValueError as exc:
            raise typer.BadParameter(f"not valid JSON ({exc})", param_hint="--params-json") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter("must be a JSON object, e.g. '{\"x\": 1}'", param_hint="--params-json")
        values.update(loaded)
    for item in params:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        values[key.strip()] = _parse_value(raw)
    return values


@app.command()
def run(
    flow: str = typer.Argument(..., help="Flow name or id."),
    project: str | None = typer.Option(None, "--project", "-p", help="Project of the flow (when names clash)."),
    param: Annotated[list[str] | None, typer.Option(
        "--param", help="NAME=VALUE (VALUE parsed as JSON when it can be, else a string; repeatable).")] = None,
    params_json: str | None = typer.Option(None, "--params-json", help="All parameters as a JSON object."),
    label: Annotated[list[str] | None, typer.Option(
        "--label", "-l", help="Run label (repeatable); only agents covering every label take the run.")] = None,
    run_name: str | None = typer.Option(None, "--name", help="A name for the run."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Follow states and logs until the run ends."),
    poll_interval: float = typer.Option(1.0, "--poll-interval", min=0.1, help="Seconds between polls with --watch."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Start a run of a registered flow now (an agent picks it up).

    With --watch the command prints every state the run passes through, in order (from its state
    history, so short ones such as a crash and its AwaitingRetry are shown too), the task runs'
    changes and the logs, and exits with the run's outcome: 0 COMPLETED, 1 FAILED or CRASHED,
    6 CANCELLED. While the server is unreachable it says so and keeps trying for as long as you
    wait. --param values win over --params-json.
    """
    parameters = _parameters(param or [], params_json)
    with _errors():
        client = _client()
        flow_data = client.get_flow(flow, project=project)
        created = client.create_flow_run(flow_data["id"], parameters=parameters or None, labels=label or None,
                                         name=run_name)
        if not watch:
            if output is Output.json:
                _print_json(created)
            else:
                console.print(f"Created flow run {created['name']} ({created['id']}) of '{flow_data['name']}': "
                              f"{created['state_type']}.", markup=False)
            return
        if output is Output.text:
            console.print(f"Created flow run {created['name']} ({created['id']}) of '{flow_data['name']}'; "
                          "watching (Ctrl-C stops watching, not the run).", markup=False)
        final = _watch(client, created["id"], poll_interval=poll_interval, show=output is Output.text)
    if output is Output.json:
        _print_json(final)
    else:
        console.print(f"Flow run {final['name']} finished: {final['state_type']} ({final['state_name']})"
                      + (f": {final['state_message']}" if final.get("state_message") else ""), markup=False)
    raise typer.Exit(RUN_EXIT_CODES.get(final["state_type"], EXIT_ERROR))


def _print_log_line(line: dict[str, Any]) -> None:
    level = line.get("level")
    level_name = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}.get(int(level or 0), str(level))
    console.print(f"{_when(line.get('timestamp'))} {level_name:<8} {line.get('logger') or '-'}: {line.get('message')}",
                  markup=False, soft_wrap=True)


def _drain_logs(client: Client, run_id: str, after: int | None, level_gte: int | None = None
                ) -> tuple[list[dict[str, Any]], int | None]:
    """Every log line after ``after``, following pages; returns the lines and the new cursor."""
    lines: list[dict[str, Any]] = []
    while True:
        page = client.list_logs(run_id, after_sequence=after, level_gte=level_gte, limit=1000)
        results = page.get("results", [])
        lines.extend(results)
        if not results:
            return lines, after
        after = page.get("next_after_sequence", after)


MAX_STATES_PAGE = 200


def _one_line(text: Any, width: int = 200) -> str:
    first = str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def _print_state(state: dict[str, Any]) -> None:
    """One line per state of the run's history; a crash the server turned into a retry (or, with no
    retries left, into FAILED) is shown as the crash it was, then the state it became."""
    when = _when(state.get("timestamp"))
    raw_details = state.get("details")
    details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    crashed = details.get("crashed")
    if crashed:
        attempt = details.get("retry_of_attempt")
        on_attempt = f" on attempt {attempt}" if attempt else ""
        console.print(f"{when} flow run ✗ CRASHED{on_attempt}: {_one_line(crashed)}", markup=False, soft_wrap=True)
    message = _one_line(state.get("message"))
    console.print(f"{when} flow run → {state.get('type')} ({state.get('name')})" + (f": {message}" if message else ""),
                  markup=False, soft_wrap=True)


class _RunFollower:
    """What ``run --watch`` has shown of a run so far, and one poll that shows what came since."""

    def __init__(self, client: Client, run_id: str, *, show: bool) -> None:
        self.client = client
        self.run_id = run_id
        self.show = show
        self.after_state: int | None = None
        self.after_log: int | None = None
        self.last_type: str | None = None
        self.task_states: dict[tuple[str, int], tuple[str, str, int]] = {}

    def poll(self) -> dict[str, Any] | None:
        """Show the states (every one, in order), task changes and log lines that came since the
        last poll; the run's detail once it has ended, else None."""
        while True:
            page = self.client.list_flow_run_states(self.run_id, after=self.after_state, limit=MAX_STATES_PAGE)
            states = page.get("results", [])
            for state in states:
                if self.show:
                    _print_state(state)
                self.last_type = str(state.get("type"))
            self.after_state = page.get("next_after", self.after_state)
            if len(states) < MAX_STATES_PAGE:
                break
        ended = self.last_type in TERMINAL_STATES
        if not self.show and not ended:
            return None
        detail = self.client.get_flow_run(self.run_id)
        if self.show:
            self._print_tasks(detail)
            lines, self.after_log = _drain_logs(self.client, self.run_id, self.after_log)
            for line in lines:
                _print_log_line(line)
        return detail if ended else None

    def _print_tasks(self, detail: dict[str, Any]) -> None:
        for task in detail.get("task_runs", []):
            key = (task["task_key"], task["map_index"])
            attempt = int(task.get("attempt") or 1)
            current = (task["state_type"], task["state_name"], attempt)
            if self.task_states.get(key) == current:
                continue
            self.task_states[key] = current
            where = task["task_key"] + (f"[{task['map_index']}]" if task["map_index"] >= 0 else "")
            retry = f", attempt {attempt}" if attempt > 1 else ""
            console.print(f"{_when(task.get('state_timestamp'))} task {where} → {current[0]} ({current[1]}){retry}",
                          markup=False)


def _watch(client: Client, run_id: str, *, poll_interval: float, show: bool) -> dict[str, Any]:
    """Follow the run until it ends and return its detail. A server that cannot be reached or keeps
    failing (a restart, a database outage answering 503) is waited out, with one line saying so,
    for as long as the user waits: the run goes on without us, and its history is complete when
    the server is back."""
    # Each poll fails fast so that the outage is reported at once; this loop does the waiting.
    follower = _RunFollower(client.with_options(retries=0), run_id, show=show)
    failures = 0
    outage_started: float | None = None
    while True:
        try:
            final = follower.poll()
        except (ServerUnavailableError, RateLimitedError) as exc:
            if outage_started is None:
                outage_started = time.monotonic()
                err_console.print(f"Server unreachable, retrying… ({_one_line(exc, 160)})", markup=False,
                                  soft_wrap=True)
            delay = min(WATCH_MAX_RETRY_SECONDS, poll_interval * 2.0 ** min(failures, 10))
            retry_after = getattr(exc, "retry_after", None)
            failures += 1
            time.sleep(min(WATCH_MAX_RETRY_SECONDS, retry_after) if retry_after else delay)
            continue
        if outage_started is not None:
            err_console.print(f"Server reachable again after {time.monotonic() - outage_started:.0f} s; "
                              "still following the run.", markup=False)
            outage_started, failures = None, 0
        if final is not None:
            return final
        time.sleep(poll_interval)


# --- runs ---------------------------------------------------------------------------------------


@runs_app.command("list")
def runs_list(
    flow: str | None = typer.Option(None, "--flow", "-f", help="Only runs of this flow (name or id)."),
    project: str | None = typer.Option(None, "--project", "-p", help="Project of --flow (when names clash)."),
    state: Annotated[list[str] | None, typer.Option(
        "--state", "-s", help="Only runs in this state type, e.g. RUNNING, FAILED (repeatable).")] = None,
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="At most this many runs (newest first)."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """List flow runs, newest first."""
    with _errors():
        client = _client()
        flow_id = client.get_flow(flow, project=project)["id"] if flow else None
        runs = client.list_flow_runs(flow=flow_id, state_type=[s.upper() for s in state or []] or None, limit=limit)
        names: dict[str, str] = {}
        if output is Output.text and runs:
            try:
                names = {f["id"]: f["name"] for f in client.list_flows()}
            except FlowdeckError:
                names = {}
    if output is Output.json:
        _print_json(runs)
        return
    if not runs:
        console.print("No flow runs match.")
        return
    print_table(("ID", "FLOW", "NAME", "STATE", "ATTEMPT", "SCHEDULED", "LABELS"),
                [(item["id"], names.get(item["flow"], _short(item["flow"])), item.get("name") or "",
                  f"{item['state_type']} ({item['state_name']})", str(item.get("attempt", "")),
                  _when(item.get("scheduled_start")), ",".join(item.get("labels") or []))
                 for item in runs])


BULK_CHUNK = 500
BULK_FIELDS = frozenset({"parameters", "labels", "name", "scheduled_start", "idempotency_key"})


def _bulk_items(path: Path) -> list[dict[str, Any]]:
    """The runs a file asks for: JSON Lines (one object a line) or one JSON array of objects."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="FILE") from None
    try:
        loaded = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON Lines or a JSON array ({exc})", param_hint="FILE") from None
    for number, item in enumerate(loaded, start=1):
        if not isinstance(item, dict) or not set(item) <= BULK_FIELDS:
            raise typer.BadParameter(
                f"item {number} must be an object with only {', '.join(sorted(BULK_FIELDS))}", param_hint="FILE")
    if not loaded:
        raise typer.BadParameter("no runs in the file", param_hint="FILE")
    return loaded


@runs_app.command("submit")
def runs_submit(
    flow: Annotated[str, typer.Argument(help="Flow name or id.")],
    file: Annotated[Path, typer.Argument(help="JSON Lines (or a JSON array): one object per run, with any of "
                                              "parameters, labels, name, scheduled_start, idempotency_key.")],
    project: str | None = typer.Option(None, "--project", "-p", help="Project of the flow (when names clash)."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Create many runs of a flow at once (500 per request; a progress bar on a terminal).

    Each run gets an idempotency key unless it has one, so submitting the same file again after an
    interruption is safe only with keys in the file. Prints the new runs' ids.
    """
    items = _bulk_items(file)
    ids: list[str] = []
    with _errors():
        client = _client()
        flow_data = client.get_flow(flow, project=project)
        with steps(f"Submitting {len(items)} runs of '{flow_data['name']}'", total=len(items)) as progress:
            for start in range(0, len(items), BULK_CHUNK):
                chunk = items[start:start + BULK_CHUNK]
                ids += client.create_flow_runs(flow_data["id"], chunk)
                progress.advance(len(chunk))
    if output is Output.json:
        _print_json({"flow": flow_data["id"], "count": len(ids), "ids": ids})
        return
    console.print(f"Created {len(ids)} runs of '{flow_data['name']}'.", markup=False)
    for run_id in ids:
        console.file.write(run_id + "\n")


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="The flow run's id."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Show a flow run: its state history (every state, oldest first) and its task runs.

    With --output json: the run's detail with the whole history in "states".
    """
    with _errors():
        client = _client()
        detail = client.get_flow_run(run_id)
        history = _state_history(client, run_id)
    if output is Output.json:
        _print_json({**detail, "states": history})
        return
    console.print(f"Flow run {detail['name']} ({detail['id']}): {detail['state_type']} ({detail['state_name']}), "
                  f"attempt {detail.get('attempt')}", markup=False, soft_wrap=True)
    if detail.get("state_message"):
        console.print(f"  {detail['state_message']}", markup=False, soft_wrap=True)
    console.print("\nState history:")
    for state in history:
        _print_state(state)
    if detail.get("task_runs"):
        console.print("\nTask runs:")
        # An unmapped task has map index -1 on the wire: show nothing there, not a number.
        print_table(("TASK", "MAP INDEX", "STATE", "ATTEMPT", "RESULT"),
                    [(task["task_key"], "" if task["map_index"] < 0 else str(task["map_index"]),
                      f"{task['state_type']} ({task['state_name']})", str(task.get("attempt") or 1),
                      task.get("result_ref") or "")
                     for task in detail["task_runs"]])


def _state_history(client: Client, run_id: str) -> list[dict[str, Any]]:
    """Every state the run went through, oldest first (following the history's pages)."""
    states: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        page = client.list_flow_run_states(run_id, after=after, limit=MAX_STATES_PAGE)
        results = page.get("results", [])
        states.extend(results)
        after = page.get("next_after", after)
        if len(results) < MAX_STATES_PAGE:
            return states


@runs_app.command("logs")
def runs_logs(
    run_id: str = typer.Argument(..., help="The flow run's id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the run ends."),
    level: str | None = typer.Option(None, "--level", help="Only lines at this level or above (INFO, WARNING, 30 …)."),
    poll_interval: float = typer.Option(1.0, "--poll-interval", min=0.1, help="Seconds between polls with --follow."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Print a flow run's logs (with --output json: a JSON list; with --follow, one JSON object per line)."""
    level_gte = _level(level)
    with _errors():
        client = _client()
        client.get_flow_run(run_id)  # a clear 'not found' before anything else
        lines, after = _drain_logs(client, run_id, None, level_gte)
        if not follow:
            if output is Output.json:
                _print_json(lines)
            else:
                for line in lines:
                    _print_log_line(line)
            return
        while True:
            for line in lines:
                if output is Output.json:
                    typer.echo(json.dumps(line, default=str))
                else:
                    _print_log_line(line)
            done = client.get_flow_run(run_id)["state_type"] in TERMINAL_STATES
            lines, after = _drain_logs(client, run_id, after, level_gte)
            if done and not lines:
                return
            if not lines:
                time.sleep(poll_interval)


def _level(level: str | None) -> int | None:
    if level is None:
        return None
    names = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
    if level.upper() in names:
        return names[level.upper()]
    if level.isdigit() and 0 <= int(level) <= 100:
        return int(level)
    raise typer.BadParameter("a level name (DEBUG, INFO, WARNING, ERROR, CRITICAL) or 0–100", param_hint="--level")


@runs_app.command("cancel")
def runs_cancel(
    run_id: str = typer.Argument(..., help="The flow run's id."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """Cancel a flow run: CANCELLING while an agent stops it, or CANCELLED at once if none holds it."""
    with _errors():
        result = _client().cancel_flow_run(run_id)
    if output is Output.json:
        _print_json(result)
        return
    console.print(f"Flow run {result['name']} ({result['id']}): {result['state_type']}.", markup=False)


# --- agents -------------------------------------------------------------------------------------


@agents_app.command("list")
def agents_list(output: Output = OUTPUT_OPTION) -> None:
    """List agents with their health (healthy, unhealthy: alive but not polling, offline)."""
    with _errors():
        agents = _client().list_agents()
    if output is Output.json:
        _print_json(agents)
        return
    if not agents:
        console.print("No agents registered: start one with `flowdeck agent start`.")
        return
    print_table(("NAME", "TYPE", "STATUS", "LABELS", "LAST HEARTBEAT", "VERSION"),
                [(agent["name"], agent["type"], agent["status"], ",".join(agent.get("labels") or []),
                  _when(agent.get("last_heartbeat_at")), agent.get("version") or "")
                 for agent in agents])


# --- alerts -------------------------------------------------------------------------------------


class IncidentStatus(enum.StrEnum):
    active = "active"
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"
    all = "all"


def _ago(value: Any, now: datetime | None = None) -> str:
    """An ISO timestamp as '5 min ago' (this machine's clock against the server's UTC times)."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"  # unreachable: seconds >= 60 here


def _incident_status(incident: dict[str, Any]) -> str:
    status = str(incident.get("status") or "")
    snoozed = incident.get("snoozed_until")
    if snoozed and status != "resolved":
        try:
            until = datetime.fromisoformat(str(snoozed))
        except ValueError:
            return status
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        if until > datetime.now(UTC):
            return f"{status}, snoozed until {until.astimezone(UTC):%H:%M} UTC"
    return status


@alerts_app.command("list")
def alerts_list(
    status: Annotated[IncidentStatus, typer.Option(
        "--status", "-s", help="active (open or acknowledged), open, acknowledged, resolved or all.")
    ] = IncidentStatus.active,
    flow: str | None = typer.Option(None, "--flow", "-f", help="Only incidents of this flow (name or id)."),
    project: str | None = typer.Option(None, "--project", "-p", help="Project of --flow (when names clash)."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000, help="At most this many incidents (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the same as --output json)."),
    output: Output = OUTPUT_OPTION,
) -> None:
    """List SLA alerts (incidents), newest first: severity, status, what broke and why, the flow,
    how many runs it covers and when it opened."""
    with _errors():
        incidents = _client().list_incidents(status=status.value, flow=flow, project=project, limit=limit)
    if as_json or output is Output.json:
        _print_json(incidents)
        return
    if not incidents:
        scope = f" for flow '{flow}'" if flow else ""
        which = "" if status is IncidentStatus.all else f"{status.value} "
        hint = " (see earlier ones with --status all)" if status is IncidentStatus.active else ""
        console.print(f"No {which}SLA alerts{scope}{hint}.", markup=False)
        return
    print_table(("SEVERITY", "STATUS", "TITLE", "CAUSE", "FLOW", "RUNS", "OPENED"),
                [(str(incident.get("severity") or ""), _incident_status(incident),
                  str(incident.get("title") or ""), _one_line(incident.get("cause"), 120) or "-",
                  str(incident.get("flow_name") or "-"), str(incident.get("run_count", 0)),
                  _ago(incident.get("opened_at")))
                 for incident in incidents])


def main() -> None:
    """Console-script entry point."""
    app()
