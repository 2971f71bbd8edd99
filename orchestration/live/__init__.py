"""The live sockets that know about flows and runs (protocol in ``docs/live-updates.md``): the
browser socket (:mod:`orchestration.live.browser`: workspace events, one run's events, restricted
projects left out) and the agent socket (:mod:`orchestration.live.agent`: work available, cancel).

They are built on the transport in :mod:`core.live` (hub, groups, base consumer, closing sockets
when access ends), which knows nothing of the domain; they read through
:mod:`orchestration.selectors` like every other adapter."""
