"""REST adapters for orchestration: the agents', the SDK's and integrators' API (docs/agent-protocol.md)."""
