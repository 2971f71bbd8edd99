"""Model instances from hand-written SQL, for the few hot statements whose compilation by the ORM
costs more CPU than the database spends running them (docs/performance.md). A :class:`Columns`
names the columns of some fields of a model for a SELECT, and builds the instance from its part of
a row the way the ORM does: the database converters applied (a JSON column arrives as text), the
fields not read deferred. Callers (and the rules that read the instances) see ordinary models."""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model


class Columns:
    """``names`` of ``model`` (field names; a foreign key is read as its id), selected from the
    table aliased ``alias``."""

    def __init__(self, model: type[Model], alias: str, names: Sequence[str] | None = None) -> None:
        wanted = None if names is None else {getattr(model._meta.get_field(name), "attname", name) for name in names}
        # In the model's order: that is how ``from_db`` matches values to fields when some are left out.
        self.fields = [f for f in model._meta.concrete_fields if wanted is None or f.attname in wanted]
        self.model = model
        self.attnames = [field.attname for field in self.fields]
        self.sql = ", ".join(f'{alias}."{field.column}"' for field in self.fields)
        self.width = len(self.fields)
        self._alias = alias
        self._converters: list[tuple[int, Any, list[Any]]] | None = None

    def load(self, row: Sequence[Any], start: int = 0) -> Any:
        """The instance read from ``row[start:start + width]``."""
        if self._converters is None:
            self._converters = _converters(self.fields, self._alias)
        values = list(row[start:start + self.width])
        conn = connections[DEFAULT_DB_ALIAS]  # one thread-local lookup, not one per use of the proxy
        for i, column, converters in self._converters:
            for convert in converters:
                values[i] = convert(values[i], column, conn)
        return self.model.from_db(conn.alias, self.attnames, values)


M = TypeVar("M", bound=Model)


def new(model: type[M], **values: Any) -> M:
    """``model(**values)``, an unsaved instance, built by the way ``from_db`` builds one: every
    field's value handed to ``Model.__init__`` in the model's order. Given by keyword, each field
    cost ``__init__`` a default looked up, a dict probe and a pop: a new flow run was 93 µs, a
    task run 50 µs, where this takes a fifth (a batch of task runs builds one and a history row
    per task). ``values`` are keyed by attname (``workspace_id``, ``id``; not ``workspace``,
    ``pk``); a field not given gets its default as ``__init__`` gives it (a callable default is
    called for each instance)."""
    plan = _new_plan.get(model) or _new_plan.setdefault(model, _plan_new(model))
    args = [values.pop(attname) if attname in values else (make() if make is not None else value)
            for attname, value, make in plan]
    if values:
        raise TypeError(f"{model.__name__} has no field(s) {', '.join(sorted(values))}")
    return model(*args)


# The values a default may be shared between instances as: immutable ones.
_IMMUTABLE = (type(None), str, int, float, bool, bytes, Decimal, uuid.UUID, dt.date, dt.time, dt.timedelta,
              tuple, frozenset, enum.Enum)


def _plan_new(model: type[Model]) -> list[tuple[str, Any, Callable[[], Any] | None]]:
    """Per concrete field of ``model``, in order: its attname, and its default as a value shared by
    every instance or as the function that makes one per instance."""
    plan: list[tuple[str, Any, Callable[[], Any] | None]] = []
    for field in model._meta.concrete_fields:
        if getattr(field, "generated", False):  # __init__ leaves these unset; so must new()
            raise TypeError(f"new() cannot build {model.__name__}: {field.name} is a generated field")
        value = field.get_default()
        if (field.has_default() and callable(field.default)) or not isinstance(value, _IMMUTABLE):
            plan.append((field.attname, None, field.get_default))
        else:
            plan.append((field.attname, value, None))
    return plan


_new_plan: dict[type[Model], list[tuple[str, Any, Callable[[], Any] | None]]] = {}


def _converters(fields: list[Any], alias: str) -> list[tuple[int, Any, list[Any]]]:
    """The converters the ORM's compiler applies to each column: the backend's (SQLite keeps UUIDs,
    dates and booleans as text and numbers) and the field's own (JSON arrives as text)."""
    found = []
    for i, field in enumerate(fields):
        column = field.get_col(alias)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if converters:
            found.append((i, column, converters))
    return found


_all: dict[tuple[type[Model], str, tuple[str, ...] | None], Columns] = {}


def _columns(model: type[Model], alias: str, only: tuple[str, ...] | None = None) -> Columns:
    key = (model, alias, only)
    found = _all.get(key)
    if found is None:
        # The primary key is always read, as .only() reads it.
        names = None if only is None else (model._meta.pk.name, *only)
        found = _all.setdefault(key, Columns(model, alias, names))
    return found


def by_id(model: type[Model], workspace: Any, pk: Any, *, related: str | None = None,
          only: tuple[str, ...] | None = None) -> Any:
    """The row ``pk`` of a tenant model in ``workspace`` (an instance or its id), every column, or
    None: what ``model.objects.for_workspace(workspace).filter(pk=pk).first()`` returns, without
    compiling a query. ``related`` names a (non-null) foreign key whose row is read in the same
    statement and cached on the instance, as ``select_related(related)`` does. ``only`` names the
    fields read, as ``.only(...)`` does (the others are deferred: read from the database if used).
    An id that is not one raises ``ValidationError`` as the ORM does."""
    return by_field(model, workspace, model._meta.pk.name, pk, related=related, only=only)


def by_field(model: type[Model], workspace: Any, name: str, value: Any, *, related: str | None = None,
             only: tuple[str, ...] | None = None) -> Any:
    """As :func:`by_id`, the row whose unique field ``name`` (unique within the workspace) is
    ``value``."""
    columns = _columns(model, "t", only)
    meta = model._meta
    conn = connections[DEFAULT_DB_ALIAS]
    params = [
        meta.get_field("workspace").get_db_prep_value(getattr(workspace, "pk", workspace), conn),  # type: ignore[union-attr]
        meta.get_field(name).get_db_prep_value(value, conn),  # type: ignore[union-attr]
    ]
    select, join = columns.sql, ""
    if related is not None:
        fk = meta.get_field(related)
        other = _columns(fk.related_model, "o")  # type: ignore[arg-type]
        select += ", " + other.sql
        join = (f'JOIN "{fk.related_model._meta.db_table}" o '  # type: ignore[union-attr]
                f'ON o."{fk.target_field.column}" = t."{fk.column}" ')  # type: ignore[union-attr]
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT {select} FROM "{meta.db_table}" t {join}'  # noqa: S608 (names from the model)
            f'WHERE t."workspace_id" = %s AND t."{meta.get_field(name).column}" = %s',  # type: ignore[union-attr]
            params,
        )
        row = cursor.fetchone()
    if row is None:
        return None
    instance = columns.load(row)
    if related is not None:
        fk.set_cached_value(instance, other.load(row, columns.width))  # type: ignore[union-attr]
    return instance


def insert_many(model: type[Model], objs: Sequence[Model], *, ignore_conflicts: bool = False,
                returning: str | None = None) -> list[Any]:
    """Insert ``objs`` as ``bulk_create`` would (the same fields, defaults and ``pre_save``), in one
    PostgreSQL statement whose text does not depend on how many rows there are, so it is prepared
    once per connection and nothing is compiled per row. The rows go as one JSON array of arrays
    that the statement takes apart, column by column, with the column's type: encoding it is one
    C call, where a parameter per column made the driver adapt every value of every array in
    Python (a fifth of a log batch's CPU). ``ignore_conflicts`` skips rows that conflict;
    ``returning`` names a field whose values, for the rows inserted, are returned."""
    return _insert(model, _insert_rows(model, objs), ignore_conflicts, returning)


def _insert_rows(model: type[Model], objs: Sequence[Model]) -> list[list[Any]]:
    """Each object's values for the insert, as ``bulk_create`` takes them (defaults, ``pre_save``)."""
    fields = _insert_fields(model)
    return [[field.pre_save(obj, True) for field in fields] for obj in objs]


def insert_values(model: type[Model], rows: Sequence[dict[str, Any]], *, ignore_conflicts: bool = False,
                  returning: str | None = None) -> list[Any]:
    """:func:`insert_many` for rows given as ``{attname: value}`` dicts, without building a model
    instance per row (for a batch of log lines that was a tenth of the request). A field a row
    leaves out gets its default, as a new instance would."""
    fields = _insert_fields(model)
    return _insert(model, [[row[f.attname] if f.attname in row else f.get_default() for f in fields] for row in rows],
                   ignore_conflicts, returning)


def _insert(model: type[Model], values: list[list[Any]], ignore_conflicts: bool, returning: str | None) -> list[Any]:
    if not values:
        return []
    sql = _insert_sql(model, _insert_fields(model), ignore_conflicts, returning)
    with connection.cursor() as cursor:
        cursor.execute(sql, [_as_json(values)])
        return [row[0] for row in cursor.fetchall()] if returning else []


def update_many(model: type[Model], objs: Sequence[Model], fields: Sequence[str], *, where: str = "",
                params: Sequence[Any] = ()) -> None:
    """Write ``fields`` of ``objs`` to their rows (by primary key) as ``bulk_update`` would, in one
    PostgreSQL statement whose text does not depend on how many rows there are, the rows sent as
    :func:`insert_many` sends them. ``where`` (with ``params``) is a further condition on the table,
    aliased ``t``."""
    if not objs:
        return
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(model, fields, where), [_update_rows(model, objs, fields), *params])


def insert_many_and_update_many(
    new: Sequence[Model], changed: Sequence[Model], fields: Sequence[str], *, where: str = "",
    params: Sequence[Any] = (),
) -> None:
    """:func:`insert_many` of ``new`` and :func:`update_many` of ``changed`` (``fields``, ``where``
    and ``params`` as there) in one statement, one round trip: the insert runs as a CTE of the
    update. For a change that writes history rows and the rows they belong to together."""
    if not changed:
        if new:
            insert_many(type(new[0]), new)
        return
    if not new:
        update_many(type(changed[0]), changed, fields, where=where, params=params)
        return
    inserted, updated = type(new[0]), type(changed[0])
    sql = (f"WITH inserted AS ({_insert_sql(inserted, _insert_fields(inserted), False, None)}) "
           + _update_sql(updated, fields, where))
    with connection.cursor() as cursor:
        cursor.execute(sql, [_as_json(_insert_rows(inserted, new)), _update_rows(updated, changed, fields), *params])


def _update_rows(model: type[Model], objs: Sequence[Model], fields: Sequence[str]) -> str:
    pk = model._meta.pk
    assert pk is not None
    written: list[Any] = [pk, *(model._meta.get_field(name) for name in fields)]
    return _as_json([[getattr(obj, field.attname) for field in written] for obj in objs])


def _as_json(rows: list[list[Any]]) -> str:
    """Rows as the one JSON parameter the statements take apart (:func:`_column_of_row`). orjson
    writes ids and times in C, the standard library through ``_json_scalar`` for each: a sixteenth
    of the time (five task runs: 6 µs instead of 104). What orjson does not write (an integer past
    64 bits, text that is not UTF-8) goes the standard library's way, as before. orjson writes NaN
    and infinities as null where the standard library wrote NaN (which PostgreSQL refused): no
    column written this way holds a float from outside today."""
    try:
        return orjson.dumps(rows, default=_json_scalar).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, default=_json_scalar, separators=(",", ":"))


def _update_sql(model: type[Model], fields: Sequence[str], where: str) -> str:
    key = (model, tuple(fields), where)
    sql = _update_sql_of.get(key)
    if sql is None:
        pk = model._meta.pk
        assert pk is not None
        written: list[Any] = [pk, *(model._meta.get_field(name) for name in fields)]
        sets = ", ".join(f'"{f.column}" = {_column_of_row(f, i)}' for i, f in enumerate(written) if i)
        sql = (f'UPDATE "{model._meta.db_table}" AS t SET {sets} '  # noqa: S608 (names from the model)
               f'FROM jsonb_array_elements(%s::jsonb) AS r WHERE t."{pk.column}" = {_column_of_row(pk, 0)}'
               + (f" AND {where}" if where else ""))
        _update_sql_of[key] = sql
    return sql


_update_sql_of: dict[tuple[type[Model], tuple[str, ...], str], str] = {}


def _json_scalar(value: Any) -> Any:
    """The text PostgreSQL reads back as the value (the types the models' fields hold)."""
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    raise TypeError(f"insert_many cannot write a {type(value).__name__}")


_insert_fields_of: dict[type[Model], list[Any]] = {}


def _insert_fields(model: type[Model]) -> list[Any]:
    found = _insert_fields_of.get(model)
    if found is None:
        # What bulk_create writes: every concrete field but a primary key the database numbers.
        found = [f for f in model._meta.concrete_fields if not (f.primary_key and f.db_returning)]
        _insert_fields_of[model] = found
    return found


_insert_sql_of: dict[tuple[type[Model], bool, str | None], str] = {}


def _insert_sql(model: type[Model], fields: list[Any], ignore_conflicts: bool, returning: str | None) -> str:
    key = (model, ignore_conflicts, returning)
    sql = _insert_sql_of.get(key)
    if sql is None:
        names = ", ".join(f'"{f.column}"' for f in fields)
        sql = (f'INSERT INTO "{model._meta.db_table}" ({names}) '  # noqa: S608 (names from the model)
               f"SELECT {', '.join(_column_of_row(f, i) for i, f in enumerate(fields))} "
               "FROM jsonb_array_elements(%s::jsonb) AS r")
        if ignore_conflicts:
            sql += " ON CONFLICT DO NOTHING"
        if returning:
            sql += f' RETURNING "{model._meta.get_field(returning).column}"'  # type: ignore[union-attr]
        _insert_sql_of[key] = sql
    return sql


def _column_of_row(field: Any, index: int) -> str:
    """Element ``index`` of the row ``r`` as ``field``'s column. A JSON column keeps the element
    (a None in Python is SQL NULL, as bulk_create writes it); any other is read from its text, cast
    to the column's type without a length, so an over-long value fails as bulk_create's does
    rather than being cut."""
    db_type = field.db_type(connection)
    if db_type in ("jsonb", "json"):
        if getattr(field, "encoder", None) is not None:
            raise TypeError(f"insert_many cannot write {field} (a JSON field with an encoder of its own)")
        return f"NULLIF(r->{index}, 'null'::jsonb)"
    return f"(r->>{index})::{re.sub(r'[(][0-9, ]+[)]$', '', db_type)}"
