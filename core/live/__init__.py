"""Live updates over websockets (issue 5): the browser socket (:mod:`core.live.browser`), the agent
socket (:mod:`core.live.agent`), and closing them when access ends (:mod:`core.live.control`).
The protocol is described in ``docs/live-updates.md``."""
