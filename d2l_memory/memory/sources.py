"""What can be ingested (text, a file, chat messages), its validation, and splitting it into memories.

Every check here runs before anything is internalized or stored, so bad input stores nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..tokens import count_tokens, token_windows

TEXT_SUFFIXES = (".txt", ".md", ".rst")
_PARAGRAPH = re.compile(r"\n[ \t]*\n+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")


@dataclass(frozen=True)
class Source:
    """Validated input of one ingest: the text, its default kind and title, and where it came from."""

    text: str
    kind: str  # "document" or "conversation"
    title: str
    units: tuple[str, ...]  # pieces never split across memories unless too long (paragraphs or messages)
    origin: dict[str, Any]  # metadata about the source (path, n_messages)


def _check_size(n_bytes: int, max_bytes: int, what: str) -> None:
    if n_bytes > max_bytes:
        raise InputError(f"{what} is {n_bytes:,} bytes, more than the limit of {max_bytes:,} bytes per ingest. "
                         "Fix: split it into smaller files, or raise MemoryConfig.max_ingest_bytes")


def read_text_file(path: str | Path, max_bytes: int) -> str:
    """Read a UTF-8 text file, refusing missing paths, folders, binary files, empty and oversized files."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"no such file: {str(p)!r}. Fix: check the path")
    if p.is_dir():
        raise InputError(f"{str(p)!r} is a folder; Memory.ingest takes one file. Fix: pass its files one by one, "
                         f"or use `d2l-memory ingest {p}` (reads {', '.join(TEXT_SUFFIXES)} files recursively)")
    if not p.is_file():
        raise InputError(f"{str(p)!r} is not a regular file")
    _check_size(p.stat().st_size, max_bytes, f"file {str(p)!r}")
    data = p.read_bytes()
    if b"\x00" in data[:8192]:
        raise InputError(f"file {str(p)!r} looks binary (it contains NUL bytes); only UTF-8 text can be ingested. "
                         "Fix: convert it to text first")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"file {str(p)!r} is not UTF-8 text (invalid byte at offset {e.start}); only UTF-8 text can "
                         "be ingested. Fix: convert it (e.g. iconv -t utf-8) or extract its text first") from None
    if not text.strip():
        raise InputError(f"file {str(p)!r} is empty (or only whitespace); nothing to remember")
    return text


def check_messages(messages: Any) -> list[dict[str, str]]:
    """Chat messages: a non-empty list of {"role": str, "content": str} dicts with some non-blank content."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise InputError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise InputError(f"messages[{i}] must be a dict with str 'role' and 'content', got {m!r:.80}")
        if not m["role"].strip():
            raise InputError(f"messages[{i}] has an empty role; use 'user', 'assistant' or 'system'")
        out.append({"role": m["role"].strip(), "content": m["content"]})
    if not any(m["content"].strip() for m in out):
        raise InputError("every message is empty; nothing to remember")
    return out


def render_message(m: dict[str, str]) -> str:
    """One transcript line, as in the training data: "User: ..." / "Assistant: ..."."""
    return f"{m['role'].capitalize()}: {m['content'].strip()}"


def transcript(messages: Sequence[dict[str, str]]) -> str:
    return "\n".join(render_message(m) for m in messages if m["content"].strip())


def _short(text: str, n: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= n else line[: n - 1].rstrip() + "\u2026"


def load_source(source: Any, max_bytes: int) -> Source:
    """Validate a str, pathlib.Path or chat messages and turn it into a :class:`Source`."""
    if isinstance(source, Path):
        text = read_text_file(source, max_bytes)
        p = source.expanduser()
        return Source(text, "document", p.name, tuple(_paragraphs(text)), {"source": str(p.resolve())})
    if isinstance(source, (bytes, bytearray)):
        try:
            source = bytes(source).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"bytes given are not UTF-8 text (invalid byte at offset {e.start}). Fix: decode them "
                             "first, or pass a str") from None
    if isinstance(source, str):
        _check_size(len(source.encode("utf-8")), max_bytes, "text")
        if not source.strip():
            raise InputError("text is empty (or only whitespace); nothing to remember")
        return Source(source, "document", _short(source), tuple(_paragraphs(source)), {})
    if isinstance(source, (list, tuple)):
        messages = check_messages(source)
        text = transcript(messages)
        _check_size(len(text.encode("utf-8")), max_bytes, "conversation")
        first = next((m["content"] for m in messages if m["role"] == "user" and m["content"].strip()), text)
        units = tuple(render_message(m) for m in messages if m["content"].strip())
        return Source(text, "conversation", _short(first), units, {"n_messages": len(messages)})
    raise InputError(f"cannot ingest a {type(source).__name__}: pass a str (text), a pathlib.Path (a file) or a list "
                     "of {'role', 'content'} messages")


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH.split(text) if p.strip()]


# ---------------------------------------------------------------------------------------------- splitting


def split_units(units: Sequence[str], max_tokens: int, tokenizer, sep: str = "\n\n") -> list[str]:
    """Pack units (paragraphs, messages) into pieces of at most ~max_tokens tokens, in order.

    Units are never split unless one alone is too long; then it is split on sentence boundaries, and a
    sentence that is still too long is cut at word starts (`tokens.token_windows`).
    """
    count: Callable[[str], int] = functools.partial(count_tokens, tokenizer)
    pieces: list[tuple[str, int]] = []
    for u in units:
        n = count(u)
        if n <= max_tokens:
            pieces.append((u, n))
            continue
        for s in (x.strip() for x in _SENTENCE.split(u)):
            if not s:
                continue
            ns = count(s)
            if ns <= max_tokens:
                pieces.append((s, ns))
            else:
                pieces.extend(token_windows(tokenizer, s, max_tokens))  # last resort: word-start cuts
    chunks: list[str] = []
    cur: list[str] = []
    cur_n = 0
    sep_n = max(1, count(sep)) if sep.strip() else 1
    for text, n in pieces:
        if cur and cur_n + sep_n + n > max_tokens:
            chunks.append(sep.join(cur))
            cur, cur_n = [], 0
        cur_n += (sep_n if cur else 0) + n
        cur.append(text)
    if cur:
        chunks.append(sep.join(cur))
    return chunks


def split_source(src: Source, max_tokens: int, tokenizer) -> list[str]:
    """The memory-sized pieces of a source (paragraph groups, or groups of whole messages)."""
    sep = "\n" if src.kind == "conversation" else "\n\n"
    pieces = split_units(src.units, max_tokens, tokenizer, sep=sep)
    if not pieces:
        raise InputError("the input tokenizes to nothing; nothing to remember")
    return pieces
