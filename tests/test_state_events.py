"""Event ids: UUID 4 hex, unique within a process and across forked workers."""

from __future__ import annotations

import os
import uuid

from state.events import PRODUCT_VIEWED, Event, new_id


def test_an_event_id_is_a_uuid4_in_hex() -> None:
    for _ in range(1000):
        text = Event(type=PRODUCT_VIEWED, visitor="v", occurred_at=0.0).id
        parsed = uuid.UUID(hex=text)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, text)


def test_a_forked_worker_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the worker: report its first ids, then leave without cleanup
        os.write(write, "".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    ours = [new_id() for _ in range(10)]
    assert len(theirs) == 320
    assert not {theirs[i : i + 32] for i in range(0, 320, 32)} & set(ours)
