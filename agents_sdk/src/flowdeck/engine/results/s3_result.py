"""``S3Result``: results as objects in an S3 bucket (or any S3-compatible store).

Needs boto3 (``pip install 'flowdeck[aws]'``), imported on first use: a flow that names an
``S3Result`` can be defined and registered where boto3 is missing; only writing or reading a result
needs it. The location is the object's key, so a retry on another machine reads the same object.
"""

from __future__ import annotations

import copy
import importlib
import re
import uuid
from typing import Any

from flowdeck.engine.results.base import Result
from flowdeck.engine.serializers import Serializer

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# What S3 (and compatible stores) answer for a key that is not there.
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})

INSTALL_HINT = "S3Result needs boto3, which is not installed: pip install 'flowdeck[aws]'"


class S3Result(Result):
    """Stores each value as an object in ``bucket``.

    Args:
        bucket: the bucket's name.
        boto3_kwargs: passed to ``boto3.client("s3", ...)`` (``endpoint_url``, ``region_name``,
            credentials …); by default boto3 finds credentials the usual way (environment, profile,
            instance role).
        location: an object key template (``"{flow_name}/{task_name}/{today}.pickle"``), filled from
            ``flowdeck.context`` and the task's inputs; default: one key per task run under the flow's
            name.
        serializer: how values become bytes (default pickle).
    """

    def __init__(
        self,
        bucket: str,
        boto3_kwargs: dict[str, Any] | None = None,
        location: str | None = None,
        serializer: Serializer | None = None,
        value: Any = None,
    ) -> None:
        if not isinstance(bucket, str) or not bucket.strip():
            raise ValueError("S3Result needs a bucket name.")
        super().__init__(value=value, location=location, serializer=serializer)
        self.bucket = bucket
        self.boto3_kwargs: dict[str, Any] = dict(boto3_kwargs or {})
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # A boto3 client does not travel to other processes: each makes its own.
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def copy(self) -> S3Result:
        new = copy.copy(self)
        new._client = self._client  # copies share the client (copy.copy goes through __getstate__)
        return new

    @property
    def client(self) -> Any:
        """The boto3 S3 client (created on first use)."""
        if self._client is None:
            try:
                # Imported by name: boto3 is optional and ships no type information.
                boto3 = importlib.import_module("boto3")
            except ImportError as exc:
                raise ImportError(INSTALL_HINT) from exc
            self._client = boto3.client("s3", **self.boto3_kwargs)
        return self._client

    @client.setter
    def client(self, value: Any) -> None:
        self._client = value

    def _default_location(self, **kwargs: Any) -> str:
        flow = _UNSAFE.sub("-", str(kwargs.get("flow_name") or "flow")).strip("-") or "flow"
        task = _UNSAFE.sub("-", str(kwargs.get("task_key") or kwargs.get("task_name") or "task")).strip("-") or "task"
        map_index = kwargs.get("map_index")
        if isinstance(map_index, int) and map_index >= 0:
            task += f"-{map_index}"
        return f"{flow}/{task}-{uuid.uuid4().hex}.result"

    def write(self, value: Any, **kwargs: Any) -> Result:
        """Upload ``value``; returns a copy holding it, whose location is the object's key."""
        new = self.format(**kwargs) if self.location else self.copy()
        if not new.location:
            new.location = self._default_location(**kwargs)
        data = self.serializer.serialize(value)
        self.client.put_object(Bucket=self.bucket, Key=new.location, Body=data)
        new.value = value
        return new

    def read(self, location: str) -> Result:
        """A copy holding the value of the object at key ``location``."""
        response = self.client.get_object(Bucket=self.bucket, Key=location)
        new = self.copy()
        new.location = location
        new.value = self.serializer.deserialize(response["Body"].read())
        return new

    def exists(self, location: str, **kwargs: Any) -> bool:
        """Whether an object is at key ``location`` (a template, filled with ``kwargs``)."""
        key = location.format(**kwargs) if kwargs else location
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            # botocore's ClientError carries the service's answer in ``.response``.
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                return False
            raise
        return True

    @property
    def uri(self) -> str | None:
        """``s3://bucket/key`` of the current location (None before one is known)."""
        return f"s3://{self.bucket}/{self.location}" if self.location else None


__all__ = ["S3Result", "INSTALL_HINT"]
