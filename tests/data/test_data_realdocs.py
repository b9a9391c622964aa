"""Real-document parsers (on tiny fixtures) and builder; one slow test downloads the packages."""

import gzip
import shutil

import pytest
from realdoc_fixtures import DEBIAN_FAQ, PY_FAQ, make_fixture_root

from d2l_memory.data import realdocs
from d2l_memory.data.parsers import (
    clean_dictd_markup,
    clean_rst_inline,
    definition_answer,
    dictd_b64decode,
    parse_debian_faq,
    parse_dictd,
    parse_rst_faq,
    read_dictd,
)
from d2l_memory.data.realdocs import RealDocsUnavailable, build_realdocs, ensure_downloaded, load_docs
from d2l_memory.data.textutil import first_sentences, split_sentences, trim_to_tokens
from d2l_memory.data.types import approx_tokens


@pytest.fixture
def fixture_root(tmp_path):
    return make_fixture_root(tmp_path / "root")


def test_rst_faq_parser():
    entries = parse_rst_faq(PY_FAQ)
    titles = [e.title for e in entries]
    assert titles == [
        "What is Python?",
        "Why does Python use indentation?",
        "Why am I getting strange results?",
        "How do I make a Python script executable on Unix?",
    ]
    what = entries[0].body
    assert "modules" in what and "partial" in what and "the tutorial" in what and "help()" in what
    assert ":mod:" not in what and "`" not in what and "https://" not in what
    assert "\n" not in what  # hard-wrapped prose is unwrapped
    indent = entries[1].body
    assert "if (x <= y)" in indent and "x++;" in indent  # code block kept
    assert ".. index" not in indent and "single:" not in indent and "faq-why-indent" not in indent
    assert "extremely" in indent and "*" not in indent
    assert first_sentences(indent) == (
        "Yes. Guido van Rossum believes that using indentation for grouping is extremely elegant."
    )


def test_rst_inline_markup():
    assert clean_rst_inline(":func:`~os.path.join`") == "join"
    assert clean_rst_inline(":ref:`the index <genindex>`") == "the index"
    assert clean_rst_inline("use *args and **kwargs") == "use *args and **kwargs"


def test_debian_faq_parser():
    entries = parse_debian_faq(DEBIAN_FAQ)
    assert [e.title for e in entries] == [
        "What is this FAQ?",
        "What is the difference between Debian GNU/Linux and other Linux distributions?",
    ]
    assert [e.extra for e in entries] == ["1.1", "1.2"]
    assert entries[0].body.startswith("This document gives frequently asked questions (with their answers!)")
    assert "\n\nIf you can't find" in entries[0].body
    assert "* The Debian package maintenance system: the entire system can be upgraded" in entries[1].body


def test_dictd_base64():
    assert dictd_b64decode("A") == 0 and dictd_b64decode("B") == 1 and dictd_b64decode("BA") == 64
    assert dictd_b64decode("Gb9L") == ((6 * 64 + 27) * 64 + 61) * 64 + 11


def test_dictd_reader_and_cleaning(fixture_root):
    d = fixture_root / "usr/share/dictd"
    raw = read_dictd(d / "foldoc.index", d / "foldoc.dict.dz")
    heads = [h for h, _ in raw]
    assert ["cache", "cache memory", "caching"] in heads  # aliases share one entry
    assert not any(h[0].startswith("00-database") for h in heads)
    entries = {e.title: e for e in parse_dictd(d / "foldoc.index", d / "foldoc.dict.dz")}
    cache = entries["cache"].body
    assert cache.startswith("A small fast memory holding recently accessed data")
    assert "{" not in cache and "<memory" not in cache and "/kash/" not in cache
    assert "1997" not in cache and "direct mapped cache" in cache and "dmc.html" not in cache
    assert definition_answer(cache) == (
        "A small fast memory holding recently accessed data, designed to "
        "speed up subsequent access to the same data."
    )
    assert definition_answer(entries["SAP"].body).startswith("SAP AG")
    jargon = {e.title: e for e in parse_dictd(d / "jargon.index", d / "jargon.dict.dz")}
    assert jargon["kluge"].extra == "/klooj/"
    assert (
        definition_answer(jargon["kluge"].body) == "A Rube Goldberg device, whether in hardware or software."
    )
    assert definition_answer(jargon["404"].body).startswith("Extended to humans")
    assert jargon["404"].extra == "//, n."


def test_dictd_markup():
    assert clean_dictd_markup("see {foo} and {bar baz (http://x.org)} &#36;") == "see foo and bar baz $"


def test_text_helpers():
    assert split_sentences("It works, e.g. here. Next one! Third?") == [
        "It works, e.g. here.",
        "Next one!",
        "Third?",
    ]
    long = "\n\n".join(["word " * 100] * 5)
    trimmed = trim_to_tokens(long, 400)
    assert approx_tokens(trimmed) <= 400 and trimmed.count("\n\n") == 2


def test_build_realdocs_from_fixture(fixture_root):
    all_docs = {s: load_docs(s, None, fixture_root) for s in realdocs.ALL_SOURCES}
    assert len(all_docs["python_faq"]) == 3  # "See the next question." is dropped
    assert len(all_docs["debian_faq"]) == 2
    assert "blat" not in {d.title for d in all_docs["foldoc"]}  # cross-reference stub dropped
    assert len(all_docs["python_docs"]) == 1 and all_docs["python_docs"][0].question is None

    a = build_realdocs(None, seed=0, split="train", root=fixture_root)
    assert a == build_realdocs(None, seed=0, split="train", root=fixture_root)
    assert [s.id for s in a] != [s.id for s in build_realdocs(None, seed=1, split="train", root=fixture_root)]
    assert len(build_realdocs(5, seed=0, split="train", root=fixture_root)) == 5
    for s in a:
        assert s.kind == "realdoc" and len(s.qas) == 1 and s.meta["answer_kind"] in ("passage", "definition")
        assert approx_tokens(s.context) <= 400
        assert s.context.startswith(s.meta["title"])
        assert s.qas[0].answer.rstrip(" .") and s.qas[0].answer.split()[0] in s.context
    defs = [s for s in a if s.meta["answer_kind"] == "definition"]
    assert all(
        s.qas[0].question in (f"What is {s.meta['title']}?", f"What does {s.meta['title']} mean?")
        for s in defs
    )
    assert all(s.qas[0].answer in s.context for s in defs)


def test_realdoc_splits_disjoint(fixture_root):
    built = {
        sp: build_realdocs(None, seed=0, split=sp, root=fixture_root, sources=realdocs.ALL_SOURCES)
        for sp in ("train", "val", "test")
    }
    assert all(built.values())
    titles = {sp: {s.meta["title"].lower() for s in v} for sp, v in built.items()}
    ids = {sp: {s.id for s in v} for sp, v in built.items()}
    for held in ("val", "test"):
        assert not titles["train"] & titles[held]
        assert not ids["train"] & ids[held]
    total = sum(len(v) for v in built.values())
    assert total == sum(len(load_docs(s, None, fixture_root)) for s in realdocs.ALL_SOURCES)


def test_ensure_downloaded_skips_when_present(fixture_root, monkeypatch):
    cache = fixture_root.parent
    monkeypatch.setattr(shutil, "which", lambda name: None)  # any download attempt would fail
    assert ensure_downloaded(realdocs.DEFAULT_SOURCES, cache_dir=cache) == cache / "root"


def test_ensure_downloaded_clear_error_without_apt(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RealDocsUnavailable, match="apt-get not found"):
        ensure_downloaded(["jargon"], cache_dir=tmp_path)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("D2L_MEMORY_HOME", str(tmp_path))
    assert realdocs.default_cache_dir() == tmp_path / "data"
    monkeypatch.delenv("D2L_MEMORY_HOME")
    assert realdocs.default_cache_dir().parts[-3:] == (".cache", "d2l-memory", "data")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian/Ubuntu)")
def test_real_download(tmp_path):
    try:
        root = ensure_downloaded(realdocs.DEFAULT_SOURCES, cache_dir=tmp_path)
    except RealDocsUnavailable as exc:  # e.g. no network or no package lists
        pytest.skip(str(exc))
    counts = realdocs.source_counts(root)
    assert counts["python_faq"]["total"] >= 150
    assert counts["debian_faq"]["total"] >= 100
    assert counts["foldoc"]["total"] >= 10_000
    assert counts["jargon"]["total"] >= 2_000
    assert ensure_downloaded(realdocs.DEFAULT_SOURCES, cache_dir=tmp_path) == root  # cached now
    samples = build_realdocs(40, seed=0, split="test", root=root)
    assert len(samples) == 40 and {s.meta["source"] for s in samples} == set(realdocs.DEFAULT_SOURCES)
    assert gzip.open(root / realdocs.SOURCE_FILES["debian_faq"][1]).read(10)
