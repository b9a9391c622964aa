"""Parsers for the real-text sources used by :mod:`d2l_memory.data.realdocs`.

Pure functions from file contents to entries, so they can be tested on tiny fixtures:

- reStructuredText FAQ pages (Python's ``faq/*.rst.txt``): question headings and their answers;
- the plain-text Debian FAQ: numbered questions and their answers;
- dictd databases (FOLDOC, Jargon File): ``.index`` + gzip ``.dict(.dz)`` term definitions;
- reStructuredText prose pages cut into sections (unsupervised contexts).
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .textutil import reflow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A titled passage: a FAQ question with its answer, or a term with its definition."""

    title: str
    body: str
    extra: str = ""  # e.g. a dictionary entry's part of speech / pronunciation line


# ----------------------------------------------------------------------------- reStructuredText

_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+_:.])\1{2,}\s*$")
# Directives whose indented body is dropped (navigation, indexing, hidden test code).
_DROP_BODY = {
    "index",
    "only",
    "contents",
    "toctree",
    "testsetup",
    "testcleanup",
    "highlight",
    "raw",
    "sectionauthor",
    "moduleauthor",
    "module",
    "currentmodule",
    "include",
    "image",
    "figure",
}
_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::(.*)$")
_COMMENT_OR_LABEL = re.compile(r"^\s*\.\.(\s+_[^:]+:.*|\s*\[.*|\s*)$")


def clean_rst_inline(text: str) -> str:
    """Strip inline reST markup: roles, links, literals and emphasis."""
    # :role:`Title <target>` -> Title ; :role:`~a.b.c` -> c ; :role:`!x` / :role:`x` -> x
    text = re.sub(r":[\w:+-]+:`([^`<]*?)\s*<[^`>]*>`", r"\1", text)
    text = re.sub(r":[\w:+-]+:`~[^`]*?([^.`]+)`", r"\1", text)
    text = re.sub(r":[\w:+-]+:`!?([^`]*)`", r"\1", text)
    text = re.sub(r"`([^`<]*?)\s*<[^`>]*>`__?", r"\1", text)  # `text <url>`_
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`]+)`_{0,2}", r"\1", text)
    text = re.sub(r"(?<![\w*])\*\*(\S(?:[^*]*?\S)?)\*\*(?![\w*])", r"\1", text)
    text = re.sub(r"(?<![\w*\\])\*(\S(?:[^*]*?\S)?)\*(?![\w*])", r"\1", text)
    text = re.sub(r"\|(\w+)\|", r"\1", text)
    return text


def clean_rst_block(text: str) -> str:
    """Remove reST directives/comments/labels, strip inline markup and reflow paragraphs."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _DIRECTIVE.match(line)
        if m:
            indent, name = len(m.group(1)), m.group(2)
            i += 1
            while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):  # directive options
                i += 1
            if name in _DROP_BODY:
                while i < len(lines) and (
                    not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
                ):
                    i += 1
            continue
        if _COMMENT_OR_LABEL.match(line) and line.strip():
            i += 1
            continue
        if line.strip() == "::":
            i += 1
            continue
        out.append(re.sub(r"(\S)\s*::\s*$", r"\1:", line))
        i += 1
    return reflow(clean_rst_inline("\n".join(out))).strip()


def rst_sections(text: str) -> Iterator[tuple[str, str]]:
    """Yield ``(heading, body)`` for each reST section (body = text up to the next heading)."""
    lines = text.replace("\r\n", "\n").split("\n")
    heads = []
    for i in range(len(lines) - 1):
        title, under = lines[i].rstrip(), lines[i + 1]
        if (
            title.strip()
            and not title.startswith(" ")
            and not _UNDERLINE.match(title)
            and _UNDERLINE.match(under)
            and len(under.strip()) >= len(title.strip()) - 1
        ):
            heads.append(i)
    for k, i in enumerate(heads):
        end = heads[k + 1] if k + 1 < len(heads) else len(lines)
        body_lines = lines[i + 2 : end]
        # An overlined title's closing overline of the next heading sits just before it: drop it.
        while body_lines and (not body_lines[-1].strip() or _UNDERLINE.match(body_lines[-1])):
            body_lines.pop()
        yield lines[i].strip(), "\n".join(body_lines)


def parse_rst_faq(text: str) -> list[Entry]:
    """Question headings (ending in ``?``) of a reST FAQ page with their cleaned answers."""
    entries = []
    for heading, body in rst_sections(text):
        title = clean_rst_inline(heading).strip()
        if not title.endswith("?"):
            continue
        answer = clean_rst_block(body)
        if answer:
            entries.append(Entry(title, answer))
    return entries


def parse_rst_prose(text: str, min_words: int = 40) -> list[Entry]:
    """Sections of a reST page with at least ``min_words`` words of cleaned text."""
    entries = []
    for heading, body in rst_sections(text):
        cleaned = clean_rst_block(body)
        if len(cleaned.split()) >= min_words:
            entries.append(Entry(clean_rst_inline(heading).strip(), cleaned))
    return entries


# ----------------------------------------------------------------------------- Debian FAQ (plain text)

_DEB_HEADING = re.compile(r"^(\d+(?:\.\d+)+)\.\s+(\S.*)$")
_DEB_CHAPTER = re.compile(r"^(Chapter|Appendix)\s+\S+\.?\s")


def parse_debian_faq(text: str) -> list[Entry]:
    """Numbered questions ("3.1.2. Will there be ...?") of the Debian FAQ text with answers.

    The table of contents (indented) is skipped; a heading may wrap onto following unindented
    lines; the answer is the indented text up to the next heading or chapter line.
    """
    lines = text.replace("\r\n", "\n").replace("\xa0", " ").split("\n")
    start = next((i for i, line in enumerate(lines) if _DEB_CHAPTER.match(line)), 0)
    entries: list[Entry] = []
    i = start
    while i < len(lines):
        m = _DEB_HEADING.match(lines[i])
        if not m:
            i += 1
            continue
        number, title = m.group(1), [m.group(2).strip()]
        i += 1
        while (
            i < len(lines)
            and lines[i].strip()
            and not lines[i].startswith(" ")
            and not _DEB_HEADING.match(lines[i])
            and not _DEB_CHAPTER.match(lines[i])
        ):
            title.append(lines[i].strip())
            i += 1
        body = []
        while i < len(lines) and not _DEB_HEADING.match(lines[i]) and not _DEB_CHAPTER.match(lines[i]):
            body.append(lines[i])
            i += 1
        full_title = " ".join(title)
        answer = reflow("\n".join(body)).strip()
        if "?" in full_title and answer:
            entries.append(Entry(full_title, answer, extra=number))
    return entries


# ----------------------------------------------------------------------------- dictd

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VAL = {c: i for i, c in enumerate(_B64)}


def dictd_b64decode(s: str) -> int:
    """Decode a dictd index number (big-endian base 64, no padding) to an int."""
    v = 0
    for c in s:
        v = v * 64 + _B64_VAL[c]
    return v


def read_dictd(index_path: str | Path, dict_path: str | Path) -> list[tuple[list[str], str]]:
    """Raw dictd entries as ``(headwords, text)``, one per distinct (offset, length).

    ``dict_path`` may be gzip (``.dict.dz``, dictzip is gzip-compatible) or plain. Headwords
    starting with ``00-database`` (dictd metadata) are skipped.
    """
    dict_path = Path(dict_path)
    with dict_path.open("rb") as f:
        magic = f.read(2)
    data = gzip.open(dict_path).read() if magic == b"\x1f\x8b" else dict_path.read_bytes()
    by_span: dict[tuple[int, int], list[str]] = {}
    for line in Path(index_path).read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        span = (dictd_b64decode(parts[1]), dictd_b64decode(parts[2]))
        by_span.setdefault(span, []).append(parts[0])
    out = []
    for (off, length), heads in sorted(by_span.items()):
        out.append((heads, data[off : off + length].decode("utf-8", errors="replace")))
    return out


def clean_dictd_markup(text: str) -> str:
    """``{link}`` -> ``link``; ``{text (url)}`` -> ``text``; ``&#36;`` entities decoded."""
    text = re.sub(r"\{([^{}]*?)\s*\((?:[^(){}]*)\)\}", r"\1", text)
    text = re.sub(r"\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"&#(\d+);", lambda m: chr(int(m.group(1))), text)
    return text


def parse_dictd_entry(raw: str) -> Entry | None:
    """Split a raw dictd entry into headword, definition body and a pronunciation/POS line.

    The entry starts with its headword line(s) at column 0 (FOLDOC lists aliases there; the
    Jargon File adds a " n." / " /pron/, n." line indented by one space), then a blank line,
    then the indented definition. FOLDOC's ``<category>`` tags, the trailing ``(YYYY-MM-DD)``
    date and ``[{Source}]`` citations are removed; ``{links}`` are unwrapped.
    """
    lines = raw.replace("\r\n", "\n").strip("\n").split("\n")
    if not lines or not lines[0].strip():
        return None
    head, i, extra = lines[0].strip(), 1, []
    while i < len(lines) and lines[i].strip():
        if lines[i].startswith(" "):
            extra.append(lines[i].strip())
        i += 1
    body = "\n".join(lines[i:])
    # FOLDOC category tags and pronunciations at the start of a (possibly numbered) paragraph.
    lead = r"((?:^|\n)[ \t]*(?:\d+\.[ \t]+)?)"
    body = re.sub(lead + r"<[^<>\n]*>[ \t]*(?:/[^/\n]+/,?[ \t]*(?:or[ \t]+)?)*", r"\1", body)
    body = re.sub(r"\n\s*\(\d{4}-\d{2}-\d{2}\)\s*$", "", body.rstrip())  # FOLDOC date
    body = re.sub(r"\n\s*\[\{?[^\]\n]*\}?\]\s*$", "", body.rstrip())  # trailing [{Jargon File}]
    body = reflow(clean_dictd_markup(body)).strip()
    if not body:
        return None
    return Entry(head, body, extra=" ".join(extra))


_POS = r"(?:n|v|vi|vt|adj|adv|interj|excl|pref|suff|prep|conj|pron|abbrev|num)\."


def definition_answer(body: str, min_words: int = 5, max_words: int = 40) -> str:
    """Reference answer for a dictionary definition: its first sentence (or clause).

    Leading ``[etymology]`` brackets, parenthetical acronyms, ``1.`` numbering and parts of
    speech ("n.", "vt.") are skipped; a paragraph that is only such a bracket is skipped.
    """
    from .textutil import first_sentences, paragraphs

    candidates = []
    for para in paragraphs(body):
        if para.startswith(" "):
            continue  # code / example
        p = para.strip()
        for _ in range(3):
            p = re.sub(r"^\[[^\]]*\]\s*", "", p)
            p = re.sub(r"^\d+\.\s+", "", p)
            p = re.sub(rf"^(?:{_POS}(?:,\s*)?)+\s+", "", p)
            p = re.sub(r"^\([^()]{1,120}\)\s*", "", p)
        if len(p.split()) >= min_words:
            return first_sentences(p, min_words=min_words, max_words=max_words)
        if len(p.split()) >= 2:
            candidates.append(p)
    return first_sentences(candidates[0], min_words=min_words, max_words=max_words) if candidates else ""


def parse_dictd(index_path: str | Path, dict_path: str | Path) -> list[Entry]:
    """All cleaned definitions of a dictd database."""
    out = []
    for _heads, raw in read_dictd(index_path, dict_path):
        e = parse_dictd_entry(raw)
        if e is not None:
            out.append(e)
    return out
