"""Request ids keep uuid4's form, never repeat, and a forked child does not reuse its parent's."""

from __future__ import annotations

import os
import uuid

from ingest.request_ids import RequestIds, request_id


def test_ids_are_version_4_uuids_in_hex() -> None:
    ids = RequestIds()
    for _ in range(3 * 256 + 7):  # across pool refills
        made = ids()
        parsed = uuid.UUID(made)
        assert parsed.hex == made
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_ids_do_not_repeat_and_use_every_random_bit() -> None:
    ids = RequestIds()
    made = [ids() for _ in range(20_000)]
    assert len(set(made)) == len(made)
    # Every position but the version digit varies (the variant digit over its four values).
    for position in range(32):
        seen = {m[position] for m in made}
        if position == 12:
            assert seen == {"4"}
        elif position == 16:
            assert seen == set("89ab")
        else:
            assert len(seen) == 16


def test_a_forked_child_draws_its_own_ids() -> None:
    request_id()  # the parent's pool now holds 255 unused ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its next id and leave at once
        os.write(write, request_id().encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert os.WEXITSTATUS(status) == 0
    parent = [request_id() for _ in range(256)]
    assert uuid.UUID(child).version == 4
    assert child not in parent
