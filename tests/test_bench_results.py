"""benchmarks/bench_memory.py rewrites only its generated block of RESULTS.md, never the hand-written reading."""

from benchscripts import load_benchmark


def _bench():
    return load_benchmark("bench_memory")


def test_write_section_replaces_only_the_generated_block(tmp_path):
    bench = _bench()
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n## Store\n\nstore notes\n\n## Memory layer\n\nhand-written reading\n\n"
                    "### A subsection\n\nmore notes\n\n## Training\n\ntraining notes\n")
    bench.write_section(path, "| table | v1 |")
    first = path.read_text()
    assert bench.BEGIN + "\n| table | v1 |\n" + bench.END in first
    for kept in ("store notes", "hand-written reading", "### A subsection", "more notes", "training notes"):
        assert kept in first
    assert first.index("## Memory layer") < first.index(bench.BEGIN) < first.index("hand-written reading")

    bench.write_section(path, "| table | v2 |")  # a rerun replaces the block in place
    second = path.read_text()
    assert "v1" not in second and second.count(bench.BEGIN) == 1
    assert second == first.replace("| table | v1 |", "| table | v2 |")


def test_write_section_adds_the_heading_when_missing(tmp_path):
    bench = _bench()
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n## Store\n\nstore notes\n")
    bench.write_section(path, "| t |")
    text = path.read_text()
    assert text.startswith("# Results\n\n## Store\n\nstore notes\n\n## Memory layer\n\n" + bench.BEGIN)
