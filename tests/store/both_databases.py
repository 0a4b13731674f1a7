"""What the store's tests share to run on both databases and in several processes: the URL of
the database a `params=["sqlite", "postgresql"]` fixture asks for, and processes started
together."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reallocator.store.sql import SqlStore


def database_url(request: pytest.FixtureRequest, tmp_path: Path, name: str = "store") -> str:
    """A new SQLite file in `tmp_path`, or the throwaway PostgreSQL server (the module's
    `postgres_url` fixture, imported from test_store_backends), as the fixture's param says."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def opened_store(
    request: pytest.FixtureRequest, tmp_path: Path, name: str = "store"
) -> Iterator[SqlStore]:
    """The body of a both-databases store fixture (`yield from` it): the store open at
    `database_url`, closed after the test."""
    opened = SqlStore.open(database_url(request, tmp_path, name))
    yield opened
    opened.close()


def run_together(target: Callable[..., None], args: tuple[Any, ...], count: int) -> None:
    """`count` spawned processes of `target(*args, barrier, errors)`, a barrier of `count` to
    release them together and a queue for what failed in them; asserts none did and each
    exited 0."""
    context = multiprocessing.get_context("spawn")
    barrier, errors = context.Barrier(count), context.Queue()
    together = (*args, barrier, errors)
    processes = [context.Process(target=target, args=together) for _ in range(count)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found, found
    assert [p.exitcode for p in processes] == [0] * count
