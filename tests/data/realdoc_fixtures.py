"""Tiny fixture trees that mimic the unpacked Debian packages used by realdocs (test helper)."""

import gzip
from pathlib import Path

PY_FAQ = """\
:tocdepth: 2

==================
General Python FAQ
==================

.. only:: html

   .. contents::

General Information
===================

What is Python?
---------------

Python is an interpreted, interactive, object-oriented programming language.  It
incorporates :mod:`modules <sys>`, exceptions and :func:`~functools.partial` objects.
See `the tutorial <https://docs.python.org/tutorial/>`_ and ``help()``.


.. _faq-why-indent:

Why does Python use indentation?
--------------------------------

Yes.  Guido van Rossum believes that using indentation for grouping is *extremely* elegant.
Occasionally C programmers will encounter a fragment of code like this::

   if (x <= y)
           x++;

.. index::
   single: indentation

Only the x++ statement is executed.


Why am I getting strange results?
---------------------------------

See the next question.


Library and Extension FAQ
=========================

How do I make a Python script executable on Unix?
-------------------------------------------------

You need to do two things: the script file's mode must be executable and the first line
must begin with ``#!`` followed by the path of the Python interpreter.
"""

DEBIAN_FAQ = """\
                      The Debian GNU/Linux FAQ

Table of Contents

1. Definitions and overview
    1.1. What is this FAQ?
    1.2. What is the difference between Debian GNU/Linux and other Linux
    distributions?
8. The Debian package management tools
    8.1. dpkg

Chapter\u00a01.\u00a0Definitions and overview

1.1.\u00a0What is this FAQ?

    This document gives frequently asked questions (with their
    answers!) about the Debian distribution and about the Debian
    project.

    If you can't find what you're looking for, check Section 12.1.

1.2.\u00a0What is the difference between Debian GNU/Linux and other Linux
distributions?

    The key features that distinguish Debian from other Linux
    distributions are its package management system and its
    developers.

      * The Debian package maintenance system: the entire system can
        be upgraded in place.

Chapter\u00a08.\u00a0The Debian package management tools

8.1.\u00a0dpkg

    This is the main package management program.
"""

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(v: int) -> str:
    out = ""
    while True:
        out = _B64[v % 64] + out
        v //= 64
        if v == 0:
            return out


def write_dictd(directory: Path, name: str, entries: list[tuple[list[str], str]]) -> None:
    """Write ``name.index`` + gzip ``name.dict.dz`` holding (headwords, text) entries."""
    data, index = b"", []
    for heads, text in entries:
        raw = text.encode("utf-8")
        for h in heads:
            index.append(f"{h}\t{b64(len(data))}\t{b64(len(raw))}")
        data += raw
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.index").write_text("\n".join(sorted(index)) + "\n", encoding="utf-8")
    with gzip.open(directory / f"{name}.dict.dz", "wb") as f:
        f.write(data)


FOLDOC_SPECIAL = [
    (["00-database-short"], "00-database-short\n     The Free On-line Dictionary of Computing\n"),
    (
        ["cache", "cache memory", "caching"],
        "cache\ncache memory\ncaching\n\n   <memory management> /kash/ A small fast memory holding\n"
        "   recently accessed data, designed to speed up subsequent access to\n"
        "   the same data.  Often applied to {processor} access.\n\n"
        "   See also {direct mapped cache (dmc.html)}.\n\n   (1997-06-25)\n\n",
    ),
    (["blat"], "blat\n\n   See {thud}.\n\n   (1996-01-01)\n\n"),
    (
        ["SAP"],
        "SAP\n\n   1. <company> SAP AG (Systems, Applications and Products).\n\n"
        "   2. <protocol> Service Advertising Protocol.\n\n   (2003-06-11)\n\n",
    ),
]

JARGON_SPECIAL = [
    (
        ["kluge"],
        "kluge\n /klooj/\n\n    [from the German \u2018klug\u2019, clever]\n\n"
        "    1. n. A Rube Goldberg device, whether in hardware or software.\n\n"
        "    2. n. A clever programming trick. Often involves {ad-hockery}.\n\n",
    ),
    (
        ["404"],
        "404\n //, n.\n\n    [from the HTTP error] Extended to humans to convey that the subject\n"
        "    has no idea or no clue. May be used reflexively.\n\n",
    ),
]


def make_fixture_root(root: Path, n_generated: int = 60) -> Path:
    faq = root / "usr/share/doc/python3.11/html/_sources/faq"
    faq.mkdir(parents=True)
    (faq / "general.rst.txt").write_text(PY_FAQ, encoding="utf-8")
    lib = root / "usr/share/doc/python3.11/html/_sources/library"
    lib.mkdir(parents=True)
    (lib / "demo.rst.txt").write_text(
        "Demo module\n===========\n\n" + ("The demo module does useful things with data. " * 12) + "\n",
        encoding="utf-8",
    )
    deb = root / "usr/share/doc/debian/FAQ"
    deb.mkdir(parents=True)
    with gzip.open(deb / "debian-faq.en.txt.gz", "wt", encoding="utf-8") as f:
        f.write(DEBIAN_FAQ)
    generated = [
        ([f"term{i}"], f"term{i}\n\n   <jargon> The number {i} concept, used for testing splits.\n\n")
        for i in range(n_generated)
    ]
    write_dictd(root / "usr/share/dictd", "foldoc", FOLDOC_SPECIAL + generated)
    generated_j = [
        ([f"word{i}"], f"word{i}\n n.\n\n    A jargon word number {i} used in tests.\n\n")
        for i in range(n_generated)
    ]
    write_dictd(root / "usr/share/dictd", "jargon", JARGON_SPECIAL + generated_j)
    return root
