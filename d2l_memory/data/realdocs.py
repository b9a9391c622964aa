"""Real documents with questions, from Debian packages fetched at run time (no model hub needed).

Sources (each a Debian package, downloaded with ``apt-get download`` and unpacked with
``dpkg-deb -x`` into a cache directory, once):

- ``python_faq`` (python3.11-doc): the Python FAQ; context = one question's answer passage
  (with the question as its heading), question = the real FAQ question, reference answer = the
  first sentence(s) of the answer (``meta["answer_kind"] = "passage"``);
- ``debian_faq`` (debian-faq): the numbered Debian FAQ, same layout as ``python_faq``;
- ``foldoc`` (dict-foldoc) and ``jargon`` (dict-jargon): dictionary definitions; context = the
  headword and its cleaned definition, question = "What is X?" / "What does X mean?", reference
  answer = the definition's first sentence (``answer_kind = "definition"``);
- ``python_docs`` (python3.11-doc, optional): sections of the library reference, tutorial and
  HOWTOs as unsupervised contexts without questions (``answer_kind = "none"``).

Splits are disjoint by document: a stable hash of the normalised title decides the split (the
title, not source+title, so a term defined in both FOLDOC and the Jargon File, whose texts
overlap, lands in the same split).
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .parsers import Entry, definition_answer, parse_debian_faq, parse_dictd, parse_rst_faq, parse_rst_prose
from .textutil import first_sentences, trim_to_tokens
from .types import QA, Sample, approx_tokens, check_split, make_rng, split_of, stable_hash

logger = logging.getLogger(__name__)

ENV_HOME = "D2L_MEMORY_HOME"
DEFAULT_SOURCES = ("python_faq", "debian_faq", "foldoc", "jargon")
ALL_SOURCES = (*DEFAULT_SOURCES, "python_docs")

_PY_DOC = "usr/share/doc/python3.11/html/_sources"
#: source -> (Debian package, path inside the package that proves it is extracted)
SOURCE_FILES: dict[str, tuple[str, str]] = {
    "python_faq": ("python3.11-doc", f"{_PY_DOC}/faq"),
    "python_docs": ("python3.11-doc", f"{_PY_DOC}/library"),
    "debian_faq": ("debian-faq", "usr/share/doc/debian/FAQ/debian-faq.en.txt.gz"),
    "foldoc": ("dict-foldoc", "usr/share/dictd/foldoc.index"),
    "jargon": ("dict-jargon", "usr/share/dictd/jargon.index"),
}
PYTHON_DOCS_DIRS = ("tutorial", "library", "howto", "reference")


class RealDocsUnavailable(RuntimeError):
    """The Debian packages holding the real documents could not be fetched or found."""


# ----------------------------------------------------------------------------- download


def default_cache_dir() -> Path:
    """``$D2L_MEMORY_HOME/data`` if set, else ``~/.cache/d2l-memory/data``."""
    home = os.environ.get(ENV_HOME)
    return Path(home).expanduser() / "data" if home else Path.home() / ".cache" / "d2l-memory" / "data"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    logger.info("running %s (in %s)", " ".join(cmd), cwd)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def ensure_downloaded(sources: Sequence[str] = DEFAULT_SOURCES, cache_dir: str | Path | None = None) -> Path:
    """Download and unpack the packages behind ``sources`` unless already unpacked.

    Packages go to ``<cache>/debs`` and are unpacked under ``<cache>/root``; the unpacked root is
    returned. ``apt-get download`` needs no root rights but needs package lists: if it fails,
    ``apt-get update`` is tried once (works as root). As root apt may warn that the download is
    "performed unsandboxed as root": harmless.

    Raises:
        RealDocsUnavailable: apt-get/dpkg-deb missing, or the download failed.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root, debs = cache / "root", cache / "debs"
    missing = sorted({SOURCE_FILES[s][0] for s in sources if not (root / SOURCE_FILES[s][1]).exists()})
    if not missing:
        return root
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RealDocsUnavailable(
                f"{tool} not found: real documents come from Debian packages {missing}. Fix: run on a "
                f"Debian/Ubuntu machine, or unpack those .deb files yourself under {root} "
                f"(dpkg-deb -x <pkg>.deb {root}) and pass root=..."
            )
    debs.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    res = _run(["apt-get", "download", *missing], debs)
    if res.returncode != 0:
        logger.warning("apt-get download failed (%s); trying apt-get update", res.stderr.strip()[-300:])
        _run(["apt-get", "update"], debs)
        res = _run(["apt-get", "download", *missing], debs)
        if res.returncode != 0:
            raise RealDocsUnavailable(
                f"apt-get download {' '.join(missing)} failed: {res.stderr.strip()[-500:]}. Fix: run "
                f"'apt-get update' (as root) and check network access to a Debian mirror"
            )
    for pkg in missing:
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            raise RealDocsUnavailable(f"no {pkg}_*.deb in {debs} after apt-get download")
        res = _run(["dpkg-deb", "-x", str(found[-1]), str(root)], debs)
        if res.returncode != 0:
            raise RealDocsUnavailable(f"dpkg-deb -x {found[-1]} failed: {res.stderr.strip()[-500:]}")
    logger.info("real documents unpacked under %s", root)
    return root


# ----------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Doc:
    """One real document: a context, optional question and reference answer, and provenance."""

    source: str
    title: str
    context: str
    question: str | None
    answer: str | None
    answer_kind: str  # "passage" | "definition" | "none"

    @property
    def key(self) -> str:
        """The split key: the normalised title (shared across sources on purpose)."""
        return " ".join(self.title.lower().split())

    @property
    def split(self) -> str:
        return split_of(self.key, salt="realdoc")


def _faq_docs(source: str, entries: Sequence[Entry], max_tokens: int) -> list[Doc]:
    docs = []
    for e in entries:
        answer = first_sentences(e.body)
        if len(e.body.split()) < 5 or len(answer.split()) < 3 or answer.startswith("See "):
            continue  # e.g. "See the next question."
        context = trim_to_tokens(f"{e.title}\n\n{e.body}", max_tokens)
        docs.append(Doc(source, e.title, context, e.title, answer, "passage"))
    return docs


_DEF_TEMPLATES = ("What is {term}?", "What does {term} mean?")


def _definition_docs(source: str, entries: Sequence[Entry], max_tokens: int) -> list[Doc]:
    docs = []
    for e in entries:
        answer = definition_answer(e.body)
        if len(answer.split()) < 3 or answer.startswith(("See ", "Same as ")):
            continue  # cross-reference stubs
        template = _DEF_TEMPLATES[stable_hash(f"{source}:{e.title}") % len(_DEF_TEMPLATES)]
        context = trim_to_tokens(f"{e.title}\n\n{e.body}", max_tokens)
        docs.append(Doc(source, e.title, context, template.format(term=e.title), answer, "definition"))
    return docs


def parse_source(source: str, root: str | Path, max_tokens: int = 400) -> list[Doc]:
    """All documents of ``source`` under an unpacked ``root`` (see :func:`ensure_downloaded`)."""
    root = Path(root)
    if source == "python_faq":
        entries = [
            e
            for f in sorted((root / SOURCE_FILES[source][1]).glob("*.rst.txt"))
            for e in parse_rst_faq(f.read_text(encoding="utf-8"))
        ]
        return _faq_docs(source, entries, max_tokens)
    if source == "debian_faq":
        path = root / SOURCE_FILES[source][1]
        text = gzip.open(path).read().decode("utf-8", errors="replace")
        return _faq_docs(source, parse_debian_faq(text), max_tokens)
    if source in ("foldoc", "jargon"):
        d = root / "usr/share/dictd"
        return _definition_docs(
            source, parse_dictd(d / f"{source}.index", d / f"{source}.dict.dz"), max_tokens
        )
    if source == "python_docs":
        docs = []
        base = root / _PY_DOC
        for sub in PYTHON_DOCS_DIRS:
            for f in sorted((base / sub).glob("*.rst.txt")):
                for e in parse_rst_prose(f.read_text(encoding="utf-8", errors="replace")):
                    title = f"{sub}/{f.name.removesuffix('.rst.txt')}: {e.title}"
                    context = trim_to_tokens(f"{e.title}\n\n{e.body}", max_tokens)
                    docs.append(Doc(source, title, context, None, None, "none"))
        return docs
    raise ValueError(f"unknown source {source!r}; expected one of {ALL_SOURCES}")


@lru_cache(maxsize=16)
def _load(source: str, root: str, max_tokens: int) -> tuple[Doc, ...]:
    docs = tuple(parse_source(source, root, max_tokens))
    logger.info("parsed %d %s documents", len(docs), source)
    return docs


def load_docs(
    source: str, split: str | None = None, root: str | Path | None = None, max_tokens: int = 400
) -> list[Doc]:
    """Documents of ``source`` (optionally only ``split``), downloading the package if needed."""
    root = Path(root) if root is not None else ensure_downloaded([source])
    docs = _load(source, str(root), max_tokens)
    return [d for d in docs if split is None or d.split == split]


def _sample_from(doc: Doc, split: str) -> Sample:
    qas = (QA(doc.question, doc.answer),) if doc.question and doc.answer else ()
    h = f"{stable_hash(doc.source + ':' + doc.title + ':' + doc.context):016x}"[:12]
    return Sample(
        context=doc.context,
        qas=qas,
        kind="realdoc",
        id=f"realdoc-{split}-{doc.source}-{h}",
        meta={
            "source": doc.source,
            "title": doc.title,
            "answer_kind": doc.answer_kind,
            "n_tokens_approx": approx_tokens(doc.context),
        },
    )


def build_realdocs(
    n: int | None,
    seed: int = 0,
    split: str = "train",
    sources: Sequence[str] = DEFAULT_SOURCES,
    root: str | Path | None = None,
    max_tokens: int = 400,
    balance: bool = True,
) -> list[Sample]:
    """Build up to ``n`` real-document samples of ``split`` (``None``: all of them).

    Args:
        n: number of samples; at most the number of documents in the split (each document is
            used once; a warning is logged when fewer are available).
        seed: shuffling seed; the same seed gives the same samples.
        split: ``"train"``, ``"val"`` or ``"test"`` (about 80/10/10 % of documents).
        sources: any of :data:`ALL_SOURCES`.
        root: an unpacked package root; default: download into :func:`default_cache_dir`.
        max_tokens: contexts are trimmed to about this many tokens (words * 1.3).
        balance: interleave the sources round-robin (so the 12k FOLDOC entries do not drown the
            FAQs) instead of sampling in proportion to their sizes.
    """
    check_split(split)
    for s in sources:
        if s not in ALL_SOURCES:
            raise ValueError(f"unknown source {s!r}; expected one of {ALL_SOURCES}")
    if root is None:
        root = ensure_downloaded(sources)
    rng = make_rng("realdoc", seed, split)
    pools = []
    for s in sources:
        docs = sorted(load_docs(s, split, root, max_tokens), key=lambda d: (d.title, d.context))
        rng.shuffle(docs)
        pools.append(docs)
    if balance:
        ordered = []
        for i in range(max((len(p) for p in pools), default=0)):
            ordered.extend(p[i] for p in pools if i < len(p))
    else:
        ordered = [d for p in pools for d in p]
        rng.shuffle(ordered)
    if n is not None and n > len(ordered):
        logger.warning("only %d %s documents in split %s (asked for %d)", len(ordered), sources, split, n)
    chosen = ordered if n is None else ordered[:n]
    samples = [_sample_from(d, split) for d in chosen]
    logger.info("built %d realdoc samples (split=%s, sources=%s)", len(samples), split, list(sources))
    return samples


def source_counts(
    root: str | Path | None = None, sources: Sequence[str] = DEFAULT_SOURCES
) -> dict[str, dict[str, int]]:
    """Per source: number of documents with a question, overall and per split."""
    root = root if root is not None else ensure_downloaded(sources)
    out = {}
    for s in sources:
        docs = load_docs(s, None, root)
        counts = {"total": len(docs), "with_qa": sum(d.question is not None for d in docs)}
        for sp in ("train", "val", "test"):
            counts[sp] = sum(d.split == sp for d in docs)
        out[s] = counts
    return out
