"""`Conversation`: chat memory. Recent turns stay in the prompt; older turns become LoRA memories.

    with memory.conversation("alice", every_n_turns=4, keep_recent=4) as conv:
        reply = conv.reply("I just adopted a cat called Miso.")     # remembers, generates, records the turn
        ...
    # on close() the turns not yet internalized are internalized too

A *turn* is one message. Whenever ``every_n_turns`` messages have left the recent window (the last
``keep_recent`` messages) without being internalized, they are internalized as one "conversation" memory.
The prompt holds every message not yet internalized plus at least the last ``keep_recent`` ones, so nothing
said is ever out of both the prompt and the memory.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..store import validate as sv
from .sources import check_messages

if TYPE_CHECKING:
    from .memory import AnswerStream, Memory
    from .results import Answer

log = logging.getLogger(__name__)


class Conversation:
    """A chat session of one user; see the module docstring."""

    def __init__(self, memory: Memory, user_id: str, *, every_n_turns: int = 4, keep_recent: int = 4,
                 metadata: dict[str, Any] | None = None):
        self.memory = memory
        self.user_id = sv.check_user_id(user_id)
        for name, v, low in (("every_n_turns", every_n_turns, 1), ("keep_recent", keep_recent, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(f"`{name}` must be an int >= {low}, got {v!r}")
        self.every_n_turns = every_n_turns
        self.keep_recent = keep_recent
        self.metadata = sv.check_metadata(metadata)
        self.id = uuid.uuid4().hex
        self.messages: list[dict[str, str]] = []
        self.memory_ids: list[str] = []  # memories this conversation created, oldest first
        self._done = 0  # messages[:_done] are internalized
        self._closed = False
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------------- turns

    def add(self, role: str, content: str) -> list[str]:
        """Record one message; returns the ids of memories internalized because of it (usually [])."""
        if self._closed:
            raise InputError("this conversation is closed; start a new one with memory.conversation(...)")
        (msg,) = check_messages([{"role": role, "content": content}])
        with self._lock:
            self.messages.append(msg)
            end = len(self.messages) - self.keep_recent
            if end - self._done >= self.every_n_turns:
                return self._internalize(end)
        return []

    @property
    def pending(self) -> list[dict[str, str]]:
        """Messages not internalized yet."""
        return self.messages[self._done:]

    def messages_for_prompt(self, new_user_message: str | None = None) -> list[dict[str, str]]:
        """The messages to send: everything not internalized yet, at least the last ``keep_recent`` turns, and
        the new user message (if given)."""
        start = max(0, min(self._done, len(self.messages) - self.keep_recent))
        msgs = [dict(m) for m in self.messages[start:]]
        if new_user_message is not None:
            msgs += check_messages([{"role": "user", "content": new_user_message}])
        return msgs

    def reply(self, user_message: str, **gen: Any) -> Answer:
        """Answer the user with memories + recent turns, then record both turns."""
        ans = self.memory.generate(self.user_id, self.messages_for_prompt(user_message), **gen)
        self.add("user", user_message)
        self.add("assistant", ans.text)
        return ans

    def stream_reply(self, user_message: str, **gen: Any) -> Iterator[str]:
        """Like :meth:`reply`, yielding the reply's text as it is generated; records both turns at the end."""
        stream: AnswerStream = self.memory.stream(self.user_id, self.messages_for_prompt(user_message), **gen)
        try:
            yield from stream
        finally:
            stream.close()
        self.add("user", user_message)
        self.add("assistant", stream.text.strip())

    # ---------------------------------------------------------------------------------------- memory

    def _internalize(self, end: int) -> list[str]:
        chunk = [m for m in self.messages[self._done:end] if m["content"].strip()]
        start, self._done = self._done, end
        if not chunk:
            return []
        meta = {**self.metadata, "conversation_id": self.id, "turns": [start, end]}
        ids = self.memory.ingest(self.user_id, chunk, kind="conversation", metadata=meta)
        self.memory_ids.extend(ids)
        log.info("conversation %s: internalized turns %d-%d of %s as %s", self.id, start, end, self.user_id, ids)
        return ids

    def flush(self) -> list[str]:
        """Internalize every message not internalized yet (recent ones included); the session stays open."""
        with self._lock:
            return self._internalize(len(self.messages)) if self._done < len(self.messages) else []

    def close(self) -> list[str]:
        """Internalize what is left and close the session; returns the ids created now."""
        if self._closed:
            return []
        ids = self.flush()
        self._closed = True
        return ids

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
