"""How a ``Result`` turns values into bytes (Prefect 1's ``prefect.engine.serializers``)."""

from __future__ import annotations

import importlib
import json
import pickle
from typing import Any


class Serializer:
    """Base class: ``serialize(value) -> bytes`` and ``deserialize(bytes) -> value``."""

    def serialize(self, value: Any) -> bytes:
        raise NotImplementedError

    def deserialize(self, value: bytes) -> Any:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    __hash__ = object.__hash__


class PickleSerializer(Serializer):
    """Pickle (``cloudpickle`` when installed, so lambdas and local classes work)."""

    def serialize(self, value: Any) -> bytes:
        try:
            # Imported by name: cloudpickle is optional and ships no type information.
            cloudpickle = importlib.import_module("cloudpickle")
        except ImportError:
            return pickle.dumps(value)
        return bytes(cloudpickle.dumps(value))

    def deserialize(self, value: bytes) -> Any:
        return pickle.loads(value)  # noqa: S301 — results are written by the flow's own tasks


class JSONSerializer(Serializer):
    """JSON: readable, for plain values only."""

    def serialize(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def deserialize(self, value: bytes) -> Any:
        return json.loads(value.decode())


__all__ = ["Serializer", "PickleSerializer", "JSONSerializer"]
