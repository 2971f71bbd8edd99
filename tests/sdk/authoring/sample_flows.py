"""A module holding flows at module level, for the storage tests (``load_flow`` by module)."""

from __future__ import annotations

from flowdeck import Flow, Parameter, task


@task
def double(x: int) -> int:
    return 2 * x


with Flow("doubler") as doubler:
    value = Parameter("value", default=21)
    doubled = double(value)


with Flow("other") as other:
    double(1)
