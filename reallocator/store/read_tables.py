"""Columns of plans' stored tables already read by this process, kept by plan name.

A plan's content never changes once recorded (its life cycle lives in another row: migration
0009), and plan names are unique (a random id each), so what was read of a plan's table stays
true for as long as the plan exists. An hourly campaign's Replan reads the moves of the ~24
plans applied in the last day and the last application's table every hour: each such read
opened an Arrow stream again (~15 us a plan). The store's queries still decide which plans
are read (a purged plan is never asked for again); only the decoding is kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import pyarrow as pa

from reallocator.store.plan_codec import deals_columns

READ_TABLES_BYTES = 32 << 20
"""What the kept columns may hold in all (Arrow buffers), the least recently read dropped
first: a 30-deal plan's moved rows are ~1 KB, so an hourly campaign's day is ~25 KB."""

_KEEP_BELOW_BYTES = 1 << 16
"""Tables whose stored stream is this long or longer are read each time and not kept: a
100k-deal plan's columns are megabytes, and its Replan's other work dwarfs reading them."""


class ReadTables:
    """`deals_columns` of a plan's stored table, once per (plan name, table, columns)."""

    def __init__(self, max_bytes: int = READ_TABLES_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._tables: OrderedDict[tuple[str, str, tuple[str, ...]], pa.Table] = OrderedDict()
        self._bytes = 0

    def columns(self, name: str, part: str, data: bytes, names: Sequence[str]) -> pa.Table:
        """The columns `names` of plan `name`'s stored table `data` (as `deals_columns`);
        `part` says which of the plan's tables `data` is (its moved rows, its deals)."""
        key = (name, part, tuple(names))
        with self._lock:
            found = self._tables.get(key)
            if found is not None:
                self._tables.move_to_end(key)
                return found
        table = deals_columns(data, names)
        if len(data) >= _KEEP_BELOW_BYTES:
            return table
        size = table.nbytes
        with self._lock:
            if key not in self._tables and size <= self.max_bytes:
                self._tables[key] = table
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, dropped = self._tables.popitem(last=False)
                    self._bytes -= dropped.nbytes
        return table

    def __len__(self) -> int:
        return len(self._tables)


__all__ = ["READ_TABLES_BYTES", "ReadTables"]
