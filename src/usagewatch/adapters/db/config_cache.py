"""A per-process cache of what every money movement reads of an account's configuration
(its alerts, its auto-recharge rule, its rate card), keyed by the account's
`config_version`; one cache per database (engine), so two databases in one process never
share entries.

Every change to those rows bumps the version in the same transaction
(`store.bump_config`), and every command reads the version with its account lock, so a
cached value is used only while it is still what the database holds -- also with several
processes on one database. A value loaded in a command is stored under the version that
command read, so a change made later in the same command is never cached as current.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")
SIZE = 10_000


class ConfigCache:
    def __init__(self, size: int = SIZE) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[int, object]] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, kind: str, account_id: str, version: int, load: Callable[[], T]) -> T:
        key = (kind, account_id)
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[0] == version:
                self._entries.move_to_end(key)
                return found[1]  # type: ignore[return-value]
        value = load()
        with self._lock:
            self._entries[key] = (version, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value


_CACHES: weakref.WeakKeyDictionary[Engine, ConfigCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cache_for(conn: Connection) -> ConfigCache:
    """The cache of the database `conn` belongs to."""
    engine = conn.engine
    with _CACHES_LOCK:
        cache = _CACHES.get(engine)
        if cache is None:
            cache = _CACHES[engine] = ConfigCache()
        return cache
