"""One SQLite file holding every store: a single writer thread with group commit.

Every write is a small function run on the writer's connection. The thread takes everything queued
since its last commit and runs it in one transaction (each function in its own savepoint, so one
failure does not undo the others), then resolves the callers' futures. Under load this turns
thousands of appends into a handful of commits. WAL with synchronous=NORMAL survives a killed
process (not a power cut), which is the durability the gateway promises. Reads run on a second
connection in their own thread.

A small write the shopper waits for (an outbox append) may instead commit on the event loop, on a
third connection, when nothing else is writing: the writer is idle, no other inline write ran in
this turn of the loop, and the file's write lock is free at once (busy timeout 0, so another
process holding it sends the write to the writer thread instead of blocking the loop). Without
fsync an INSERT and COMMIT take tens of microseconds; the two thread hops they replace take a
few hundred, which at low load is most of what a tracked call adds. Under load the writes of one
loop turn still go to the writer together and share its commits.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")
log = logging.getLogger(__name__)
_STOP = object()
_CHECKPOINT = object()  # enough commits since the last checkpoint: start one
_CHECKPOINTED = object()  # its bulk is done: finish it on the writer
_LOCKED = object()  # an inline write found the write lock taken: the writer thread does it
CHECKPOINT_EVERY = 500  # writes between WAL checkpoints (see _start_checkpoint)


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection with the pragmas every user of the file needs (CLI commands included)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Store:
    def __init__(self, path: Path | str, schema: str, *, max_batch: int = 10_000) -> None:
        """`max_batch=1` gives one commit per write (the benchmark's baseline)."""
        self.path = Path(path)
        self._schema = schema
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._inline: sqlite3.Connection | None = None
        self._inline_lock = threading.Lock()  # the inline connection is one loop's at a time
        self._inline_turn = False  # an inline write ran in this turn of the loop
        self._since_checkpoint = 0  # writes committed, inline or not (two threads count: roughly)
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoints: ThreadPoolExecutor | None = None
        self._checkpointing = False  # one under way (writer thread only)
        self._writing = False  # the writer thread holds a batch
        self.commits = 0
        self.inline_commits = 0

    def open(self) -> None:
        if self._thread is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = connect(self.path)
        writer.executescript(self._schema)
        writer.execute("PRAGMA wal_autocheckpoint=0")  # inside a COMMIT it stalled every writer
        self._checkpointer = connect(self.path)
        self._checkpointer.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpoints = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-wal")
        self._reader = connect(self.path)
        self._inline = connect(self.path)
        self._inline.execute("PRAGMA busy_timeout=0")
        self._inline.execute("PRAGMA wal_autocheckpoint=0")  # never a checkpoint on the loop
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        self._thread = threading.Thread(
            target=self._run, args=(writer,), name="sqlite-writer", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Commit what is queued, then stop the threads."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None
        assert self._checkpoints is not None and self._checkpointer is not None
        self._checkpoints.shutdown(wait=True)
        self._checkpointer.close()
        assert self._pool is not None and self._reader is not None and self._inline is not None
        with self._inline_lock:
            self._inline.close()
        self._pool.shutdown(wait=True)
        self._reader.close()

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, inline: bool = False) -> T:
        """Run `fn` in the next group commit; return once it is committed. `inline=True` is for
        a small, bounded write a caller is waiting on: it may commit on the loop (see above)."""
        if self._thread is None:
            raise RuntimeError("SQLite store is not open")
        loop = asyncio.get_running_loop()
        if inline and not self._inline_turn and not self._writing and self._queue.empty():
            result = self._write_inline(fn, loop)
            if result is not _LOCKED:
                return cast(T, result)
        future: asyncio.Future[T] = loop.create_future()
        # Straight to the writer: whatever queues up while it commits goes in its next batch.
        self._queue.put(([(fn, future)], loop))
        return await future

    def _write_inline(
        self, fn: Callable[[sqlite3.Connection], T], loop: asyncio.AbstractEventLoop
    ) -> T | object:
        """Commit `fn` on this thread if the write lock is free now; `_LOCKED` if it is not.
        An error from `fn` itself is the caller's, as it would be from the writer."""
        conn = self._inline
        if conn is None or not self._inline_lock.acquire(blocking=False):
            return _LOCKED
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # locked by the writer or another process
                return _LOCKED
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            self._inline_lock.release()
        self._inline_turn = True
        loop.call_soon(self._next_turn)
        self.inline_commits += 1
        self._since_checkpoint += 1
        if self._since_checkpoint % CHECKPOINT_EVERY == 0:
            self._queue.put(_CHECKPOINT)  # the writer starts one (it may be idle)
        return result

    def _next_turn(self) -> None:
        self._inline_turn = False

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._pool is not None and self._reader is not None, "store not open"
        reader = self._reader
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, reader)

    def _run(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            self._writing = True
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(item is _STOP for item in batch)
            work = [
                (fn, future, loop)
                for item in batch
                if isinstance(item, tuple)
                for fn, future in item[0]
                for loop in (item[1],)
            ]
            for start in range(0, len(work), self._max_batch):
                chunk = work[start : start + self._max_batch]
                self._commit(conn, chunk)
                self._since_checkpoint += len(chunk)
            if any(item is _CHECKPOINTED for item in batch):
                _checkpoint(conn, "RESTART")
                self._checkpointing = False
            if self._since_checkpoint >= CHECKPOINT_EVERY and not self._checkpointing:
                self._start_checkpoint()
            self._writing = False
        conn.close()

    def _start_checkpoint(self) -> None:
        """Checkpoint in two steps, so the appends shoppers wait on never wait for the bulk.

        Moving the WAL into the file means syncing both, several milliseconds here, and a
        checkpoint on the writer held up every write meanwhile (SQLite's automatic one ran
        inside a COMMIT: the p99 of a tracked call was 7 ms). The bulk now runs on a connection
        of its own while writes go on; but a WAL that is written while it is checkpointed never
        restarts, so the writer then runs a second, short one that holds writes (RESTART): it
        moves only what came in meanwhile, and the next write starts the WAL over."""
        assert self._checkpoints is not None and self._checkpointer is not None
        self._checkpointing = True
        self._since_checkpoint = 0
        checkpointer = self._checkpointer

        def bulk() -> None:
            _checkpoint(checkpointer)
            self._queue.put(_CHECKPOINTED)

        self._checkpoints.submit(bulk)

    def _commit(self, conn: sqlite3.Connection, work: list[Any]) -> None:
        outcomes: list[tuple[Any, Any, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, future, loop in work:
                conn.execute("SAVEPOINT w")
                try:
                    result = fn(conn)
                except Exception as exc:  # noqa: BLE001 - one caller's failure stays theirs
                    conn.execute("ROLLBACK TO w")
                    outcomes.append((future, loop, None, exc))
                else:
                    outcomes.append((future, loop, result, None))
                conn.execute("RELEASE w")
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as exc:
            log.exception("SQLite store commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(future, loop, None, exc) for _, future, loop in work]
        by_loop: dict[Any, list[tuple[Any, Any, BaseException | None]]] = {}
        for future, loop, result, error in outcomes:
            by_loop.setdefault(loop, []).append((future, result, error))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the caller's loop is gone (shutdown); nothing to tell
                pass


def _checkpoint(conn: sqlite3.Connection, mode: str = "PASSIVE") -> None:
    """Move what the WAL holds into the file (no connection checkpoints by itself). PASSIVE
    lets writers go on; RESTART holds them until the WAL can start over."""
    try:
        conn.execute(f"PRAGMA wal_checkpoint({mode})")
    except sqlite3.Error:
        log.warning("SQLite checkpoint failed; the next one retries", exc_info=True)


def _settle(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
