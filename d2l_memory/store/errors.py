"""Exceptions raised by the adapter store.

Every message names the offending field or object and says how to fix it.
All exceptions derive from :class:`StoreError`, so callers can catch one type.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by :mod:`d2l_memory.store`."""


class ConfigError(StoreError, ValueError):
    """A :class:`~d2l_memory.store.config.StoreConfig` field is invalid."""


class ValidationError(StoreError, ValueError):
    """An argument passed to the store is invalid; nothing was stored."""

    def __init__(self, field: str, problem: str, fix: str):
        self.field = field
        super().__init__(f"invalid {field!s}: {problem}. Fix: {fix}")


class MemoryNotFound(StoreError, KeyError):
    """No live memory with this id exists for this user.

    Raised identically for a missing id, a memory of another user, a deleted
    memory and an expired memory, so that users cannot probe each other's ids.
    """

    def __init__(self, user_id: str, memory_id: str):
        self.user_id = user_id
        self.memory_id = memory_id
        super().__init__(
            f"memory {memory_id!r} not found for user {user_id!r}. Fix: check the memory id and the "
            f"user id (list_memories(user_id) shows this user's live memories; deleted or expired "
            f"memories are hidden)"
        )

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class UserNotFound(StoreError, KeyError):
    """The user (namespace) does not exist."""

    def __init__(self, user_id: str):
        self.user_id = user_id
        super().__init__(
            f"user {user_id!r} not found. Fix: create it with create_user({user_id!r}) or by adding a "
            f"memory for it; list_users() shows existing users"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class CorruptAdapterError(StoreError):
    """An adapter payload failed its sha256 check (corrupted, truncated or missing blob)."""

    def __init__(self, memory_id: str, where: str, problem: str):
        self.memory_id = memory_id
        self.where = where
        super().__init__(
            f"adapter of memory {memory_id!r} is corrupt ({where}): {problem}. Fix: restore the blob "
            f"from a backup/export, or delete the memory (delete + purge) and add it again"
        )


class EmbeddingDimMismatch(ValidationError):
    """An embedding's dimension differs from the user's existing embeddings of that model."""

    def __init__(self, model: str, expected: int, got: int):
        self.expected = expected
        self.got = got
        super().__init__(
            "embedding",
            f"dimension {got} differs from dimension {expected} of this user's existing "
            f"embeddings of model {model!r}",
            f"pass a {expected}-dim vector, or name a different embedding_model",
        )


class MigrationError(StoreError):
    """The database schema could not be upgraded or is not at the expected revision."""


class ImportExportError(StoreError):
    """An export directory or archive is malformed or inconsistent."""
