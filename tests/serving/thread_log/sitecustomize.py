"""Put on a server process's PYTHONPATH by tests/serving: appends the name of every thread the
process starts to the file named by FLOWDECK_TEST_THREAD_LOG (one line each, flushed at once), so a
test can count the threads a real server starts while it serves requests. When the first request
thread starts (the server is serving), it also writes how many objects the cyclic collector has
frozen to that file's name plus ``.gc``."""

import gc
import os
import threading

_path = os.environ.get("FLOWDECK_TEST_THREAD_LOG")
if _path:
    _start = threading.Thread.start

    def _logged_start(self: threading.Thread) -> None:
        with open(_path, "a") as log:  # noqa: PTH123 - a few lines, before the thread runs
            log.write(self.name + "\n")
        if self.name.startswith("WSGI_") and not os.path.exists(_path + ".gc"):
            with open(_path + ".gc", "w") as log:  # noqa: PTH123
                log.write(str(gc.get_freeze_count()))
        _start(self)

    threading.Thread.start = _logged_start  # type: ignore[method-assign]
