"""Live-update transport over websockets (protocol in ``docs/live-updates.md``): one channel-layer
subscription per process fanned out to its sockets (:mod:`core.live.hub`), the group names
(:mod:`core.live.groups`), the base consumer with its bounded queues (:mod:`core.live.base`), log
coalescing (:mod:`core.live.logs`) and closing sockets when access ends (:mod:`core.live.control`,
:mod:`core.live.signals`).

Nothing here knows about flows or runs: the sockets that do live beside their domain
(:mod:`orchestration.live`). ``core`` imports no app (``tests/test_architecture.py``)."""
