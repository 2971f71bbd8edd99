"""Flowdeck: define flows in Python, run them in your own infrastructure, observe them in Flowdeck.

This package is the SDK and the agent. It talks to the Flowdeck server over HTTP and websockets
only; it never imports the server or Django.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
