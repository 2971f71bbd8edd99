"""Helpers shared by the SDK: logging, edge annotations (``unmapped``, ``flatten``), task helpers."""
