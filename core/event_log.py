"""Per-workspace event sequence and bounded replay (E2 in docs/reliability.md).

Every published event gets a ``seq``: a strictly increasing integer per workspace, shared by the
workspace's own events and the events inside its runs. The last :data:`REPLAY_MAX_EVENTS` events
of each workspace, no older than :data:`REPLAY_MAX_AGE_SECONDS`, are kept, so a socket that
reconnects with the last seq it saw gets what it missed; a gap older than that is reported as such
(the client reloads from REST).

Two stores, picked to match the channel layer:

- :class:`RedisEventLog` (production, tests): a Lua script bumps ``<prefix>:live:seq:<ws>`` and
  XADDs the event to the stream ``<prefix>:live:log:<ws>`` with the seq as its id, capped at
  :data:`REPLAY_MAX_EVENTS` and expiring after :data:`REPLAY_MAX_AGE_SECONDS` of silence. The
  background sender appends a whole batch in one pipelined round trip. Every ASGI process and
  worker shares it, so the seq is global to the workspace.
- :class:`MemoryEventLog` (embedded mode, one process): ring buffers in memory.

The numbering never goes back below what a client may have seen, even when Redis loses the counter
(an empty restart, a flush, an eviction, 30 days of silence). Two guards, both in the scripts:

- a missing counter starts at the Redis server's clock in **milliseconds**, not at 0. Any process
  may be the first to touch it after the loss, including one that never saw the old numbers; a
  counter started earlier at its own clock value was then at most that value plus the events since,
  which stays below the new start unless the workspace averaged 1,000 events a second meanwhile;
- a **floor**: every process remembers the highest seq it handed out, delivered or read per
  workspace (:meth:`RedisEventLog.observe`), and a counter below that floor is raised to it.

So seqs are large numbers, not counts; clients only compare them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

REPLAY_MAX_EVENTS = 1_000
REPLAY_MAX_AGE_SECONDS = 600
# A counter silent this long is dropped; it starts again from the clock (see the module docstring).
SEQ_TTL_SECONDS = 30 * 24 * 3600


@dataclass
class Replay:
    """What a reconnecting socket missed: ``events`` as ``{"seq", "event", "flow_run_id"}`` in
    order, ``gap`` when some of it is no longer kept, and the workspace's ``latest`` seq."""

    events: list[dict[str, Any]] = field(default_factory=list)
    gap: bool = False
    latest: int = 0


def _select(
    entries: list[tuple[int, float, str | None, dict[str, Any]]], after: int, latest: int, flow_run_id: str | None,
    now: float,
) -> Replay:
    """Entries (seq, time, run id, event) of one workspace with seq > ``after``, oldest first →
    the replay for the workspace's own events (``flow_run_id`` None) or for one run's events."""
    if after >= latest:
        # Nothing missed, or the seq was reset (store flushed): a client ahead of us missed an unknown amount.
        return Replay(gap=after > latest, latest=latest)
    cutoff = now - REPLAY_MAX_AGE_SECONDS
    kept = [e for e in entries if e[1] >= cutoff]
    # Gap: the oldest kept event is not the one right after ``after`` (trimmed, expired or lost).
    gap = not kept or kept[0][0] > after + 1
    events = [
        {"seq": seq, "event": event, "flow_run_id": run}
        for seq, _, run, event in kept
        if run == flow_run_id
    ]
    return Replay(events=events, gap=gap, latest=latest)


class _Floors:
    """The highest seq this process has handed out, delivered or read, per workspace."""

    def __init__(self) -> None:
        self._floors: dict[str, int] = {}
        self._floor_lock = threading.Lock()  # the sender's thread and the server's loop both write

    def observe(self, workspace_id: str, seq: int) -> None:
        with self._floor_lock:
            if seq > self._floors.get(workspace_id, 0):
                self._floors[workspace_id] = seq

    def floor(self, workspace_id: str) -> int:
        return self._floors.get(workspace_id, 0)


class MemoryEventLog:
    """In-process ring buffers (embedded mode: one server process publishes and serves)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._entries: dict[str, deque[tuple[int, float, str | None, dict[str, Any]]]] = {}

    def observe(self, workspace_id: str, seq: int) -> None:
        """The floor (see :class:`RedisEventLog`): here the counter itself, which is never lost
        while the process lives (a restarted embedded server numbers from 1 again, and its clients
        see ``hello`` go backwards and start over)."""
        with self._lock:
            if seq > self._seq.get(workspace_id, 0):
                self._seq[workspace_id] = seq

    def floor(self, workspace_id: str) -> int:
        with self._lock:
            return self._seq.get(workspace_id, 0)

    def append(self, workspace_id: str, event: dict[str, Any], flow_run_id: str | None) -> int:
        with self._lock:
            seq = self._seq.get(workspace_id, 0) + 1
            self._seq[workspace_id] = seq
            ring = self._entries.setdefault(workspace_id, deque(maxlen=REPLAY_MAX_EVENTS))
            ring.append((seq, time.time(), flow_run_id, event))
            return seq

    async def latest(self, workspace_id: str) -> int:
        with self._lock:
            return self._seq.get(workspace_id, 0)

    async def replay(self, workspace_id: str, after: int, flow_run_id: str | None = None) -> Replay:
        with self._lock:
            latest = self._seq.get(workspace_id, 0)
            entries = [e for e in self._entries.get(workspace_id, ()) if e[0] > after]
        return _select(entries, after, latest, flow_run_id, time.time())


# counter(key, floor, ttl): the counter's value, created or raised as the module docstring says.
# Numbers go through string.format: Lua would print large ones in exponent notation.
_COUNTER = """
local function counter(key, floor, ttl)
  local cur = tonumber(redis.call('GET', key))
  local set = false
  if not cur then
    local t = redis.call('TIME')
    cur = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    set = true
  end
  if cur < floor then
    cur = floor
    set = true
  end
  if set then
    redis.call('SET', key, string.format('%d', cur), 'PX', ttl)
  end
  return cur
end
"""

# Bump the seq and XADD the event under it, atomically, so a seq is never handed out without its
# event being stored (a reader never sees a hole that is not a trim). A stream whose ids ran ahead
# of the counter (the counter alone was evicted) is dropped and restarted: readers see a gap.
# ARGV: event, run, time (ms), maxlen, stream TTL (ms), counter TTL (ms), floor.
_APPEND = _COUNTER + """
local seq = counter(KEYS[1], tonumber(ARGV[7]), ARGV[6]) + 1
redis.call('SET', KEYS[1], string.format('%d', seq), 'PX', ARGV[6])
local id = string.format('%d-1', seq)
local ok = redis.pcall('XADD', KEYS[2], 'MAXLEN', ARGV[4], id, 'e', ARGV[1], 'r', ARGV[2], 't', ARGV[3])
if type(ok) == 'table' and ok.err then
  redis.call('DEL', KEYS[2])
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], id, 'e', ARGV[1], 'r', ARGV[2], 't', ARGV[3])
end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return seq
"""

# A channel-layer group's members, those older than ARGV[1] (a Unix time) dropped first.
_GROUP_MEMBERS = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# The latest seq (ARGV: floor, counter TTL): a lost counter is started here too, so a client that
# reconnects after Redis lost it is told a seq no lower than the next event's.
_LATEST = _COUNTER + """
return counter(KEYS[1], tonumber(ARGV[1]), ARGV[2])
"""


class RedisEventLog(_Floors):
    """Seq counters and capped streams in Redis, shared by every process."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        # redis.asyncio clients belong to one event loop: one per loop (the server's sockets).
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        # The background sender's blocking client (core.events): a third of the asyncio client's CPU
        # per round trip, and the sender's thread has nothing else to do while it waits.
        self._blocking: Any = None
        self._blocking_lock = threading.Lock()

    def _client(self) -> Any:
        import redis.asyncio as aredis
        from redis.asyncio.retry import Retry

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            pool = aredis.BlockingConnectionPool.from_url(self.url, **_pool_options(Retry))
            client = aredis.Redis(connection_pool=pool)
            self._clients[loop] = client
        return client

    def blocking_client(self) -> Any:
        """A blocking redis-py client with the same settings as the asyncio ones (thread-safe)."""
        if self._blocking is None:
            import redis
            from redis.retry import Retry

            with self._blocking_lock:
                if self._blocking is None:
                    pool = redis.BlockingConnectionPool.from_url(self.url, **_pool_options(Retry))
                    self._blocking = redis.Redis(connection_pool=pool)
        return self._blocking

    def _keys(self, workspace_id: str) -> tuple[str, str]:
        return f"{self.prefix}:live:seq:{workspace_id}", f"{self.prefix}:live:log:{workspace_id}"

    async def append_many(self, items: list[tuple[str, dict[str, Any], str | None]]) -> list[int]:
        """Store (workspace id, event, run id) items; return their seqs. One round trip."""
        return (await self.append_and_read_groups(items, [], 0))[0]

    async def append_and_read_groups(
        self, items: list[tuple[str, dict[str, Any], str | None]], group_keys: list[str], expired_before: int,
    ) -> tuple[list[int], dict[str, list[str]]]:
        """:meth:`append_many`, and in the same round trip the members of the channel-layer groups
        ``group_keys`` (their keys in this Redis), those that joined before ``expired_before`` (a
        Unix time) dropped first as channels-redis does: the sender learns which events have
        anyone to go to without two more round trips per event."""
        async with self._client().pipeline(transaction=False) as pipe:
            self._queue_append_and_read(pipe, items, group_keys, expired_before)
            replies = await pipe.execute() if items or group_keys else []
        return self._appended_and_read(items, group_keys, replies)

    def append_and_read_groups_blocking(
        self, items: list[tuple[str, dict[str, Any], str | None]], group_keys: list[str], expired_before: int,
    ) -> tuple[list[int], dict[str, list[str]]]:
        """:meth:`append_and_read_groups` on :meth:`blocking_client` (the background sender's)."""
        with self.blocking_client().pipeline(transaction=False) as pipe:
            self._queue_append_and_read(pipe, items, group_keys, expired_before)
            replies = pipe.execute() if items or group_keys else []
        return self._appended_and_read(items, group_keys, replies)

    def _queue_append_and_read(
        self, pipe: Any, items: list[tuple[str, dict[str, Any], str | None]], group_keys: list[str],
        expired_before: int,
    ) -> None:
        now_ms = str(int(time.time() * 1000))
        for workspace_id, event, flow_run_id in items:
            pipe.eval(
                _APPEND, 2, *self._keys(workspace_id),
                json.dumps(event, separators=(",", ":")), flow_run_id or "", now_ms,
                REPLAY_MAX_EVENTS, REPLAY_MAX_AGE_SECONDS * 1000, SEQ_TTL_SECONDS * 1000,
                self.floor(workspace_id),
            )
        for key in group_keys:
            pipe.eval(_GROUP_MEMBERS, 1, key, expired_before)

    def _appended_and_read(
        self, items: list[tuple[str, dict[str, Any], str | None]], group_keys: list[str], replies: list[Any],
    ) -> tuple[list[int], dict[str, list[str]]]:
        seqs = [int(seq) for seq in replies[:len(items)]]
        for (workspace_id, _, _), seq in zip(items, seqs, strict=True):
            self.observe(workspace_id, seq)
        found = replies[len(items):]
        return seqs, {key: [m.decode() for m in members] for key, members in zip(group_keys, found, strict=True)}

    async def latest(self, workspace_id: str) -> int:
        seq = int(await self._client().eval(_LATEST, 1, self._keys(workspace_id)[0], self.floor(workspace_id),
                                            SEQ_TTL_SECONDS * 1000))
        self.observe(workspace_id, seq)
        return seq

    async def replay(self, workspace_id: str, after: int, flow_run_id: str | None = None) -> Replay:
        seq_key, log_key = self._keys(workspace_id)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.eval(_LATEST, 1, seq_key, self.floor(workspace_id), SEQ_TTL_SECONDS * 1000)
            pipe.xrange(log_key, min=f"{after + 1}-0", max="+", count=REPLAY_MAX_EVENTS + 1)
            raw_latest, raw_entries = await pipe.execute()
        self.observe(workspace_id, int(raw_latest))
        entries = []
        for entry_id, fields in raw_entries:
            seq = int(entry_id.split(b"-")[0])
            run = fields.get(b"r", b"").decode() or None
            entries.append((seq, int(fields[b"t"]) / 1000, run, json.loads(fields[b"e"])))
        return _select(entries, after, int(raw_latest or 0), flow_run_id, time.time())


def _pool_options(retry: Any) -> dict[str, Any]:
    """Settings of every client of the log (``retry``: redis-py's Retry class, sync or asyncio).
    Short timeouts: with Redis down, live updates degrade quickly instead of hanging (G3). A
    blocking pool: a burst of reconnecting sockets waits for a connection instead of failing. One
    immediate retry on a connection error: after Redis restarts, each pooled connection fails once
    ("closed by server") before it is replaced, and must not lose an event."""
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    return {"max_connections": 200, "timeout": 5, "socket_connect_timeout": 1, "socket_timeout": 2,
            "retry": retry(NoBackoff(), 1), "retry_on_error": [RedisConnectionError]}


_memory_log = MemoryEventLog()
_redis_logs: dict[tuple[str, str], RedisEventLog] = {}
_redis_lock = threading.Lock()


def event_log_for(layer: Any) -> MemoryEventLog | RedisEventLog | None:
    """The store that goes with a channel layer: in memory for the in-memory layer, else the
    Redis the layer uses (its first host), under the layer's prefix."""
    if layer is None:
        return None
    if isinstance(layer, InMemoryChannelLayer):
        return _memory_log
    hosts = getattr(layer, "hosts", None) or []
    host = hosts[0] if hosts else None
    url = host.get("address") if isinstance(host, dict) else host
    if not isinstance(url, str):
        return None  # a sentinel or exotic layer: events still flow, without replay
    prefix = str(getattr(layer, "prefix", "fd") or "fd")
    with _redis_lock:
        log = _redis_logs.get((url, prefix))
        if log is None:
            log = _redis_logs[(url, prefix)] = RedisEventLog(url, prefix)
        return log


def get_event_log() -> MemoryEventLog | RedisEventLog | None:
    return event_log_for(get_channel_layer())
