"""``ShellTask``: run a shell command as a task (Prefect 1's ``prefect.tasks.shell.ShellTask``).

The command (after the optional helper script) is written to a temporary file and run by ``shell``
with the task's environment plus ``env``. Standard output and standard error come back together, one
stream (reading both pipes separately without blocking is not worth it). The task returns the last
line of output (every line with ``return_all``); a non-zero exit status fails it with
``Command failed with exit code N``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

from flowdeck.core.task import Task
from flowdeck.engine import signals


def _stream_level(stream_output: bool | int | str) -> int | None:
    """The logging level output lines are logged at as they come (None: they are not)."""
    if stream_output is True:
        return logging.INFO
    if stream_output is False or stream_output is None:
        return None
    if isinstance(stream_output, int):
        return stream_output
    level = logging.getLevelName(str(stream_output).upper())
    if not isinstance(level, int):
        raise ValueError(f"stream_output must be a bool, a logging level or a level name, not {stream_output!r}.")
    return level


class ShellTask(Task):
    """Runs a shell command.

    Args:
        command: the command; may also be given when the task is called (that one wins).
        env: environment variables added to the task's own for the command; may also be given
            when the task is called.
        helper_script: shell code run before the command in the same shell (change directory,
            define functions …); may also be given when the task is called.
        shell: the shell that runs it (default ``bash``).
        return_all: return every line of output as a list instead of the last line.
        log_stderr: when the command fails, log its output (the last line, or all with
            ``return_all``) at ERROR level. Output is one stream, so this is stdout too.
        stream_output: log each line as it comes: ``True`` at INFO, or a level (``logging.DEBUG``,
            ``"WARNING"``); default ``False``.
        **kwargs: ``Task`` arguments (``name``, ``max_retries`` …).
    """

    def __init__(
        self,
        command: str | None = None,
        env: Mapping[str, str] | None = None,
        helper_script: str | None = None,
        shell: str = "bash",
        return_all: bool = False,
        log_stderr: bool = False,
        stream_output: bool | int | str = False,
        **kwargs: Any,
    ) -> None:
        self.command = command
        self.env = dict(env) if env is not None else None
        self.helper_script = helper_script
        self.shell = shell
        self.return_all = return_all
        self.log_stderr = log_stderr
        self.stream_level = _stream_level(stream_output)
        self.stream_output = stream_output
        super().__init__(**kwargs)

    def run(
        self,
        command: str | None = None,
        env: Mapping[str, str] | None = None,
        helper_script: str | None = None,
    ) -> str | list[str] | None:
        """Run the command; returns its last line of output (None when it printed nothing), or
        every line with ``return_all``. Raises ``FAIL`` when it exits with a non-zero status."""
        command = command if command is not None else self.command
        env = env if env is not None else self.env
        helper_script = helper_script if helper_script is not None else self.helper_script
        if command is None:
            raise TypeError("run() missing required argument: 'command'")
        environment = dict(os.environ)
        environment.update({str(k): str(v) for k, v in (env or {}).items()})

        lines: list[str] = []
        line: str | None = None
        with tempfile.NamedTemporaryFile(prefix="flowdeck-shell-", suffix=".sh") as script:
            if helper_script:
                script.write(helper_script.encode())
                script.write(os.linesep.encode())
            script.write(command.encode())
            script.flush()
            # Running the user's command is the point of the task.
            with subprocess.Popen(  # noqa: S603
                [self.shell, script.name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment
            ) as process:
                assert process.stdout is not None
                for raw in iter(process.stdout.readline, b""):
                    line = raw.decode("utf-8", errors="replace").rstrip()
                    if self.return_all:
                        lines.append(line)
                    if self.stream_level is not None:
                        self.logger.log(self.stream_level, line)
                returncode = process.wait()

        output: str | list[str] | None = lines if self.return_all else line
        if returncode:
            message = f"Command failed with exit code {returncode}"
            self.logger.error(message)
            if self.log_stderr:
                self.logger.error("\n".join(lines) if self.return_all else (line or ""))
            raise signals.FAIL(message, result=output)
        return output


__all__ = ["ShellTask"]
