"""User B can never reach a memory of user A: every read, count, search, update and delete is scoped."""

from __future__ import annotations

import pytest
from store_helpers import add, vec

from d2l_memory.store import MemoryNotFound


def _same_error(fn, user, mid):
    """Calling fn with another user raises exactly what a missing id raises."""
    with pytest.raises(MemoryNotFound) as wrong_user:
        fn(user, mid)
    with pytest.raises(MemoryNotFound) as missing:
        fn(user, "f" * 32)
    assert type(wrong_user.value) is type(missing.value)
    assert str(wrong_user.value).replace(mid, "ID") == str(missing.value).replace("f" * 32, "ID")


def test_other_user_cannot_reach_memory(store):
    a = add(store, "alice", 1, metadata={"tag": "x"})
    parent = add(store, "alice", 2)
    add(store, "bob", 3, metadata={"tag": "x"})

    ops = {
        "get_memory": lambda u, m: store.get_memory(u, m),
        "get_adapter_bytes": lambda u, m: store.get_adapter_bytes(u, m),
        "get_embedding": lambda u, m: store.get_embedding(u, m),
        "update_metadata": lambda u, m: store.update_metadata(u, m, {"owned": "bob"}),
        "set_ttl": lambda u, m: store.set_ttl(u, m, 0),
        "delete": lambda u, m: store.delete(u, m),
        "history": lambda u, m: store.history(u, m),
        "lineage": lambda u, m: store.lineage(u, m),
        "parents": lambda u, m: add(store, u, 4, kind="consolidated", parents=[m]),
    }
    for name, fn in ops.items():
        for intruder in ("bob", "carol"):  # an existing and a never-seen user
            try:
                _same_error(fn, intruder, a.id)
            except AssertionError as exc:  # pragma: no cover - message names the op
                raise AssertionError(f"{name} as {intruder}: {exc}") from exc

    # lists, counts and searches of bob never contain alice's memories
    assert all(r.user_id == "bob" for r in store.list_memories("bob", include_deleted=True))
    assert store.count("bob") == 1 and store.count("bob", metadata={"tag": "x"}) == 1
    assert all(r.user_id == "bob" for r, _ in store.search("bob", vec(1), k=10))
    assert store.search("carol", vec(1), k=10) == []
    assert store.count("carol") == 0 and store.list_memories("carol") == []

    # bulk operations of bob leave alice untouched
    store.delete_all("bob")
    store.purge("bob")
    assert store.count("alice") == 2
    rec = store.get_memory("alice", a.id)
    assert rec.metadata == {"tag": "x"} and rec.expires_at is None and rec.deleted_at is None
    assert [e.event for e in store.history("alice", a.id)] == ["add"]
    assert store.lineage("alice", parent.id).children == ()
    assert store.search("alice", vec(1), k=1)[0][0].id == a.id


def test_same_content_in_two_users_stays_separate(store):
    a = add(store, "alice", 1, text="shared")
    b = add(store, "bob", 1, text="shared")
    assert a.id != b.id and a.content_sha256 == b.content_sha256
    store.delete("bob", b.id)
    assert store.get_memory("alice", a.id).id == a.id
    store.purge()
    assert store.get_adapter_bytes("alice", a.id)
