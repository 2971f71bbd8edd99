"""Put on a server process's PYTHONPATH by tests/serving: appends the name of every thread the
process starts to the file named by FLOWDECK_TEST_THREAD_LOG (one line each, flushed at once), so a
test can count the threads a real server starts while it serves requests."""

import os
import threading

_path = os.environ.get("FLOWDECK_TEST_THREAD_LOG")
if _path:
    _start = threading.Thread.start

    def _logged_start(self: threading.Thread) -> None:
        with open(_path, "a") as log:  # noqa: PTH123 - a few lines, before the thread runs
            log.write(self.name + "\n")
        _start(self)

    threading.Thread.start = _logged_start  # type: ignore[method-assign]
