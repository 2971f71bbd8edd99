"""Transactions without a savepoint where one would only cost round trips."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

from django.db import transaction

P = ParamSpec("P")
R = TypeVar("R")


def in_transaction(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` in the caller's transaction, or in a new one when there is none. No savepoint:
    each pair is two more statements on every call, and under load every round trip waits for a
    CPU. For functions that write nothing before they refuse (or whose caller's transaction rolls
    back whole when they raise); a caller that wants to carry on after an error wraps the call in
    its own ``transaction.atomic()``."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if transaction.get_connection().in_atomic_block:
            return func(*args, **kwargs)
        with transaction.atomic():
            return func(*args, **kwargs)

    return wrapper


_ROLLS_BACK_WHOLE = "_flowdeck_rolls_back_whole"


@contextlib.contextmanager
def rolled_back_whole() -> Iterator[None]:
    """The caller's word that any error leaving this block rolls its whole transaction back (a
    request's, through an ``atomic(savepoint=False)`` that dooms it): services called inside then
    need no savepoint of their own (:func:`atomic_service`)."""
    connection = transaction.get_connection()
    previous = getattr(connection, _ROLLS_BACK_WHOLE, False)
    setattr(connection, _ROLLS_BACK_WHOLE, True)
    try:
        yield
    finally:
        setattr(connection, _ROLLS_BACK_WHOLE, previous)


def atomic_service(func: Callable[P, R]) -> Callable[P, R]:
    """``transaction.atomic`` for a service: a refusal rolls back what it wrote (its savepoint), so a
    caller may carry on; inside :func:`rolled_back_whole` the savepoint is left out, since the
    whole transaction rolls back on any error anyway (two round trips less per call)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        connection = transaction.get_connection()
        whole = connection.in_atomic_block and getattr(connection, _ROLLS_BACK_WHOLE, False)
        with transaction.atomic(savepoint=not whole):
            return func(*args, **kwargs)

    return wrapper
