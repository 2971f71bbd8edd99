"""Warm flow-run processes: the process agent's way to start a quick run without Python's start-up.

A warm process is ``python -m flowdeck.agent.execute --warm`` started ahead of any claim, in its own
process group, in the runs' working directory, with the environment every run of this agent shares
(``PATH``/``HOME``/``LANG``, the agent's ``--env`` values and import paths, ``FLOWDECK_AGENT_PID``).
It imports the SDK, the engine, the client and the reporter and waits on its stdin, holding no
lease and no socket. On a claim the agent writes it one line — the run's complete environment, as
a fresh process would have got it, and the working directory — and closes the pipe; from then on it
is the run's process like any other (output captured, killed as a group on cancellation or a stale
attempt, ended by the agent's death), and the agent starts the next warm process. A warm process
serves one run and exits: nothing a flow imported or changed carries over to another run.

A run is launched cold (a new process, as without warm processes) when a warm process could not
honour its configuration: another interpreter, a working directory other than the one the warm
process started in, or an environment that differs in a variable Python reads at start-up
(``PYTHONPATH`` and the other ``PYTHON*``, the locale, ``HOME``, ``TZ``, the temporary directory,
the dynamic loader's ``LD_*``). The reason is logged at debug level.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger("flowdeck.agent.warm")

# Environment variables read when the interpreter starts (or cached by the modules a warm process has
# imported): a run whose value differs from the warm process's cannot take it over.
STARTUP_PREFIXES = ("PYTHON", "LC_", "LD_")
STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "HOME", "TZ", "TMPDIR", "TEMP", "TMP"})
# After this many warm processes in a row died soon after they started (an interpreter or an
# installation that cannot start), no more are started: runs are launched cold, as without them.
MAX_EARLY_DEATHS = 3
EARLY_DEATH_SECONDS = 60.0
# How long to wait for a killed warm process to be reaped.
STOP_GRACE = 2.0


def is_startup_variable(name: str) -> bool:
    return name.startswith(STARTUP_PREFIXES) or name in STARTUP_NAMES


def cold_reason(*, python: str, cwd: Path, env: Mapping[str, str], warm: WarmProcess) -> str | None:
    """Why ``warm`` cannot take a run with this interpreter, working directory and environment, or
    None when it can."""
    if python != warm.python:
        return f"it runs under {python}, the warm process under {warm.python}"
    if cwd != warm.cwd:
        return f"its working directory is {cwd}, the warm process's {warm.cwd}"
    for name in sorted(set(env) | set(warm.env)):
        if is_startup_variable(name) and env.get(name) != warm.env.get(name):
            return f"its environment sets {name} differently, which Python reads at start-up"
    return None


@dataclass(eq=False)
class WarmProcess:
    """One waiting flow-run process and how it was started."""

    process: subprocess.Popen[bytes]
    python: str
    cwd: Path
    env: dict[str, str]
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def hand_over(self, env: Mapping[str, str], cwd: Path) -> None:
        """Give it its run (one line on stdin, then end of input). Raises OSError when it is gone."""
        line = json.dumps({"env": dict(env), "cwd": str(cwd)}).encode() + b"\n"
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(line)
            stdin.flush()
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def output(self) -> str:
        """What it printed (read once it has ended, for the log)."""
        stream = self.process.stdout
        if stream is None:
            return ""
        try:
            if select.select([stream], [], [], 0)[0]:
                return stream.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            pass
        return ""

    def stop(self) -> None:
        """End it at once (it holds nothing: no lease, no socket, no run)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            self.process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            logger.warning("The warm flow-run process %s did not end", self.process.pid)


class WarmPool:
    """Keeps ``size`` warm processes started with ``python`` in ``cwd`` and the environment
    ``make_env()`` returns. :meth:`tend` (called by the agent's loop) replaces those that were
    taken or died; :meth:`take` hands one out; :meth:`close` ends them."""

    def __init__(self, size: int, *, python: str, cwd: Path, make_env: Callable[[], dict[str, str]]) -> None:
        if size < 0:
            raise ValueError("The number of warm processes cannot be negative.")
        self.size = size
        self.python = python
        self.cwd = cwd
        self.make_env = make_env
        self.ready: list[WarmProcess] = []
        self.early_deaths = 0
        self.started = 0  # warm processes started so far
        self.closed = False

    @property
    def enabled(self) -> bool:
        return self.size > 0 and not self.closed and self.early_deaths < MAX_EARLY_DEATHS

    def tend(self) -> None:
        """Replace warm processes that died waiting, and start the missing ones."""
        for warm in list(self.ready):
            code = warm.process.poll()
            if code is None:
                continue
            self.ready.remove(warm)
            # One that waited long and was then killed says nothing about the next one's start.
            early = time.monotonic() - warm.started_at < EARLY_DEATH_SECONDS
            self.early_deaths = self.early_deaths + 1 if early else 0
            output = warm.output()
            warm.stop()
            shown = f"; its output:\n{output[-2000:]}" if output else ""
            if self.early_deaths >= MAX_EARLY_DEATHS:
                logger.warning("Warm flow-run process %s ended before it had work (exit status %s), %d in a row; "
                               "launching runs cold from now on%s", warm.pid, code, self.early_deaths, shown)
            else:
                logger.warning("Warm flow-run process %s ended before it had work (exit status %s); starting "
                               "another%s", warm.pid, code, shown)
        while self.enabled and len(self.ready) < self.size:
            try:
                self.ready.append(self._start())
            except OSError as exc:
                self.early_deaths = MAX_EARLY_DEATHS
                logger.warning("Could not start a warm flow-run process (%s); launching runs cold", exc)

    def _start(self) -> WarmProcess:
        env = self.make_env()
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module, no shell)
            [self.python, "-m", "flowdeck.agent.execute", "--warm"],
            env=env,
            cwd=self.cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a run's process has
        )
        self.started += 1
        logger.debug("Started warm flow-run process %s", process.pid)
        return WarmProcess(process, self.python, self.cwd, env)

    def take(self, *, python: str, cwd: Path, env: Mapping[str, str], what: str = "the run") -> WarmProcess | None:
        """A warm process for a run with this interpreter, directory and environment, handed over
        already, or None (launch it cold; the reason is logged at debug level)."""
        if not self.enabled:
            return None
        for warm in list(self.ready):
            if warm.process.poll() is not None:
                continue  # died waiting: :meth:`tend` replaces it and says why
            why = cold_reason(python=python, cwd=cwd, env=env, warm=warm)
            if why is not None:
                logger.debug("Launching %s cold: %s", what, why)
                return None
            self.ready.remove(warm)
            try:
                warm.hand_over(env, cwd)
            except (OSError, ValueError) as exc:  # it died just now: the next one, or cold
                logger.debug("The warm flow-run process %s could not take %s (%s)", warm.pid, what, exc)
                self.early_deaths += 1
                warm.stop()
                continue
            self.early_deaths = 0
            return warm
        logger.debug("Launching %s cold: no warm process is waiting", what)
        return None

    def close(self) -> None:
        """End every waiting warm process (the agent is stopping); none is started any more."""
        self.closed = True
        while self.ready:
            self.ready.pop().stop()
