"""Small plain-text helpers for the real-document builders: reflowing, sentences, trimming."""

from __future__ import annotations

import re

from .types import approx_tokens

_BULLET = re.compile(r"^(?:[*\-+•]|\d+[.)]|[a-z][.)])\s+")
_ABBREV = {
    "e.g",
    "i.e",
    "etc",
    "cf",
    "vs",
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "st",
    "no",
    "fig",
    "eg",
    "ie",
    "approx",
    "incl",
    "esp",
    "resp",
    "al",
    "ca",
    "viz",
    "vol",
    "ed",
    "inc",
    "ltd",
    "co",
    "jr",
    "sr",
}
_SPLIT_POINT = re.compile(r"(?<=[.!?])[\"”’')\]]?\s+(?=[A-Z0-9\"“‘(\[`*])")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def paragraphs(text: str) -> list[str]:
    """Non-empty blocks of ``text`` separated by blank lines (lines kept as they are)."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\t", "    "))
    return [b.strip("\n") for b in blocks if b.strip()]


def reflow(text: str) -> str:
    """Unwrap hard-wrapped prose paragraphs and bullet items into single lines.

    A block at the text's base indentation whose lines are all equally indented is prose and is
    joined with spaces; a bullet item with indented continuation lines is joined too. Anything
    else (code, deeper-indented examples) keeps its line breaks, dedented to the base indentation.
    Blocks are separated by one blank line.
    """
    blocks = paragraphs(text)
    if not blocks:
        return ""
    base = min(_indent(line) for b in blocks for line in b.split("\n") if line.strip())
    out = []
    for b in blocks:
        lines = [line for line in b.split("\n") if line.strip()]
        indents = [_indent(line) for line in lines]
        stripped = [line.strip() for line in lines]
        same = all(i == indents[0] for i in indents)
        wrapped = len(lines) > 1 and all(len(x) >= 50 for x in lines[:-1])  # hard-wrapped prose
        if same and (indents[0] == base or wrapped):
            out.append(" " * (indents[0] - base) + " ".join(stripped))
        elif _BULLET.match(stripped[0]) and all(i > indents[0] for i in indents[1:]):
            out.append(" " * (indents[0] - base) + " ".join(stripped))
        else:
            out.append("\n".join(line[base:].rstrip() for line in lines))
    return "\n\n".join(re.sub(r"(?<=\S) {2,}(?=\S)", " ", o) if "\n" not in o else o for o in out)


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences (a light heuristic that respects common abbreviations)."""
    text = " ".join(text.split())
    out, start = [], 0
    for m in _SPLIT_POINT.finditer(text):
        before = text[start : m.start()].rstrip(".!?\"”’')]")
        last = before.split(" ")[-1] if before else ""
        if last.lower() in _ABBREV or (len(last) == 1 and last.isalpha()):
            continue
        out.append(text[start : m.start() + len(m.group(0).rstrip())].strip())
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def first_sentences(text: str, min_words: int = 6, max_words: int = 50) -> str:
    """The first sentence(s) of the prose of ``text``.

    Code/indented paragraphs are skipped. Sentences are added until the answer has at least
    ``min_words`` words and does not end with ``:`` (an introduction to an example). A first
    sentence longer than ``max_words`` is cut at its first ``;`` (or at ``max_words`` words).
    """
    parts: list[str] = []
    for para in paragraphs(text):
        if para.startswith((" ", ">>>")):
            continue  # code or an indented example
        for sent in split_sentences(para):
            if parts and len(" ".join(parts).split()) >= min_words and not parts[-1].endswith(":"):
                break
            parts.append(sent)
        else:
            continue
        break
    answer = " ".join(parts)
    words = answer.split()
    if len(words) > max_words:
        head = answer.split(";")[0]
        answer = (
            head.rstrip(".") + "." if len(head.split()) <= max_words else " ".join(words[:max_words]) + " ..."
        )
    return answer.strip()


def trim_to_tokens(text: str, max_tokens: int) -> str:
    """Keep whole paragraphs (then whole sentences, then words) within ``max_tokens``.

    Tokens are approximated by :func:`~d2l_memory.data.types.approx_tokens` (words * 1.3).
    """
    if approx_tokens(text) <= max_tokens:
        return text
    kept: list[str] = []
    for para in text.split("\n\n"):
        candidate = "\n\n".join([*kept, para])
        if approx_tokens(candidate) <= max_tokens:
            kept.append(para)
            continue
        if not kept or "\n" not in para:  # fill up with whole sentences of this paragraph
            sents, part = split_sentences(para) if "\n" not in para else [], []
            for s in sents:
                if approx_tokens("\n\n".join([*kept, " ".join([*part, s])])) > max_tokens:
                    break
                part.append(s)
            if part:
                kept.append(" ".join(part))
            elif not kept:  # a single huge sentence or code block: cut by words
                budget = int(max_tokens / 1.3)
                kept.append(" ".join(para.split()[:budget]))
        break
    return "\n\n".join(kept)
