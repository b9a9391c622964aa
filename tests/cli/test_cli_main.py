"""The d2l-memory CLI (typer CliRunner, in process, tiny engine via the make_memory hook)."""

from __future__ import annotations

import json

import pytest
from d2l_memory.cli import main as cli_main

ALICE = "Alice lives in Lisbon. She moved there from Porto."
BOB = "The special magic number is 1234. Remember the magic number."


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _one_line_error(result, needle):
    assert result.exit_code == 1, result.output
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert needle in lines[0], lines[0]


def test_ingest_folder_recursively_then_list_show_and_ask(cli, tmp_path):
    _write(tmp_path / "notes" / "alice.md", ALICE)
    _write(tmp_path / "notes" / "deep" / "sky.txt", "The grass is green and the sky is blue.")
    _write(tmp_path / "notes" / "skip.bin", "not a text suffix")
    _write(tmp_path / "notes" / ".hidden" / "x.md", "hidden folder")
    res = _json(cli(["ingest", "--user", "alice", str(tmp_path / "notes"), "--json"]))
    assert [s["title"] for s in res["sources"]] == ["alice.md", "sky.txt"] and res["new"] == res["memories"]

    listed = _json(cli(["--json", "list", "--user", "alice"]))
    assert listed["total"] == res["memories"] and {m["kind"] for m in listed["memories"]} == {"document"}
    mid = res["sources"][0]["ids"][0]
    shown = _json(cli(["show", "--user", "alice", mid, "--json"]))
    assert shown["text"] == ALICE and shown["adapter"]["rank"] > 0

    human = cli(["list", "--user", "alice"])
    assert human.exit_code == 0 and mid in human.stdout and "alice.md" in human.stdout
    ans = _json(cli(["ask", "--user", "alice", "Where does Alice live?", "--json"]))
    assert ans["memories"][0]["id"] == mid and ans["usage"]["completion_tokens"] > 0
    plain = cli(["ask", "--user", "alice", "Where does Alice live?"])
    assert plain.exit_code == 0 and plain.stdout.strip() == ans["text"] and "memories:" in plain.stderr


def test_stdin_ingest(cli):
    res = _json(cli(["ingest", "--user", "alice", "-", "--json"], input=ALICE))
    assert res["sources"][0]["source"] == "stdin" and res["sources"][0]["title"] == "stdin"
    again = _json(cli(["ingest", "--user", "alice", "-", "--json"], input=ALICE))
    assert again["new"] == 0  # same text: the existing memory


def test_users_are_isolated(cli, tmp_path):
    a = _json(cli(["ingest", "-u", "alice", str(_write(tmp_path / "a.md", ALICE)), "--json"]))
    b = _json(cli(["ingest", "-u", "bob", str(_write(tmp_path / "b.md", BOB)), "--json"]))
    a_id, b_id = a["sources"][0]["ids"][0], b["sources"][0]["ids"][0]
    assert [m["id"] for m in _json(cli(["list", "-u", "bob", "--json"]))["memories"]] == [b_id]
    _one_line_error(cli(["show", "-u", "bob", a_id]), "not found for user 'bob'")
    _one_line_error(cli(["forget", "-u", "bob", a_id]), "not found for user 'bob'")
    _one_line_error(cli(["export", "-u", "bob", "--peft", str(tmp_path / "x"), "--id", a_id]), "not found")
    ans = _json(cli(["ask", "-u", "bob", "Where does Alice live?", "--json"]))
    assert all(m["id"] != a_id for m in ans["memories"])
    users = _json(cli(["users", "--json"]))
    assert {u["id"]: u["memories"] for u in users} == {"alice": 1, "bob": 1}
    assert _json(cli(["show", "-u", "alice", a_id, "--json"]))["id"] == a_id  # still there


def test_forget_removes_memories(cli, tmp_path):
    res = _json(cli(["ingest", "-u", "alice", str(_write(tmp_path / "a.md", ALICE)),
                     str(_write(tmp_path / "b.md", BOB)), "--json"]))
    first = res["sources"][0]["ids"][0]
    assert _json(cli(["forget", "-u", "alice", first, "--json"]))["forgotten"] == [first]
    assert first not in [m["id"] for m in _json(cli(["list", "-u", "alice", "--json"]))["memories"]]
    _one_line_error(cli(["forget", "-u", "alice"]), "pass a memory ID or --all")
    aborted = cli(["forget", "-u", "alice", "--all"], input="n\n")
    assert aborted.exit_code == 1 and _json(cli(["list", "-u", "alice", "--json"]))["total"] == 1
    done = _json(cli(["forget", "-u", "alice", "--all", "--yes", "--purge", "--json"]))
    assert len(done["forgotten"]) == 1 and done["purged"]
    _one_line_error(cli(["ask", "-u", "alice", "anything?"]), "'alice' has no memories")
    _one_line_error(cli(["forget", "-u", "alice", "--all", "--yes"]), "'alice' has no memories")


def test_bad_input_is_one_line_error_and_stores_nothing(cli, tmp_path, monkeypatch):
    binary = tmp_path / "img.txt"
    binary.write_bytes(bytes(range(256)))
    empty = _write(tmp_path / "empty.md", "\n  \n")
    good = _write(tmp_path / "good.md", ALICE)
    big = _write(tmp_path / "big.txt", "word " * 2_000_000)  # 10 MB > the 5 MB default limit
    _one_line_error(cli(["ingest", "-u", "u", str(tmp_path / "missing.md")]), "no such file or folder")
    _one_line_error(cli(["ingest", "-u", "u", str(good), str(binary)]), "binary")
    _one_line_error(cli(["ingest", "-u", "u", str(empty), str(good)]), "is empty")
    _one_line_error(cli(["ingest", "-u", "u", str(big)]), "max_ingest_bytes")
    _one_line_error(cli(["ingest", "-u", "u", "-"], input=""), "empty")
    _one_line_error(cli(["ingest", "-u", "u", str(tmp_path / "empty_dir_that_is_missing")]), "no such file")
    (tmp_path / "nothing").mkdir()
    _one_line_error(cli(["ingest", "-u", "u", str(tmp_path / "nothing")]), "holds no .txt/.md/.rst files")
    _one_line_error(cli(["ingest", "-u", "u", str(good), "--kind", "diary"]), "kind")
    _one_line_error(cli(["ingest", "-u", " u", str(good)]), "user_id")
    assert _json(cli(["users", "--json"])) == []
    skipped = cli(["ingest", "-u", "u", str(good), str(binary), "--skip-bad", "--json"])
    assert _json(skipped)["memories"] == 1 and "skipped:" in skipped.stderr


def test_chat_remembers_the_conversation(cli):
    res = cli(["chat", "-u", "alice", "--every-n-turns", "2", "--keep-recent", "2"],
              input="Hi, I am Alice and I live in Lisbon.\n/help\nI have a cat called Miso.\n/exit\n")
    assert res.exit_code == 0, res.output
    assert res.stdout.count("assistant>") == 2 and "/exit" in res.stderr
    listed = _json(cli(["list", "-u", "alice", "--kind", "conversation", "--json"]))
    texts = " ".join(m["title"] for m in listed["memories"])
    assert listed["total"] >= 2 and "Alice" in texts
    eof = cli(["chat", "-u", "bob"], input="hello\n")  # end of input also ends the chat
    assert eof.exit_code == 0 and _json(cli(["list", "-u", "bob", "--json"]))["total"] >= 1


def test_consolidate_and_export(cli, tmp_path):
    for i in range(3):
        cli(["ingest", "-u", "alice", "--kind", "conversation", "-"],
            input=f"User: my number is {i}\nAssistant: ok")
    rep = _json(cli(["consolidate", "-u", "alice", "--rank", "2", "--json"]))
    assert rep["memory_id"] and len(rep["source_ids"]) >= 3 and 0 < rep["kept_fraction"] <= 1
    human = cli(["consolidate", "-u", "alice"])
    assert human.exit_code == 0 and "nothing to consolidate" in human.stdout
    shown = _json(cli(["show", "-u", "alice", rep["memory_id"], "--json"]))
    assert sorted(shown["parents"]) == sorted(rep["source_ids"]) and shown["kind"] == "consolidated"
    out = _json(cli(["export", "-u", "alice", "--peft", str(tmp_path / "peft"), "--json"]))
    assert (tmp_path / "peft" / "adapter_config.json").is_file() and out["max_lora_rank"] >= out["rank"]
    human = cli(["export", "-u", "alice", "--peft", str(tmp_path / "peft2")])
    assert human.exit_code == 0 and "--enable-lora" in human.stdout
    dump = _json(cli(["export", "-u", "alice", "--dump", str(tmp_path / "dump.tar.gz"), "--json"]))
    assert (tmp_path / "dump.tar.gz").is_file() and dump["user"] == "alice"
    _one_line_error(cli(["export", "-u", "alice"]), "pass --peft DIR or --dump PATH")


def test_db_commands(cli):
    cur = _json(cli(["--json", "db", "current"]))
    assert cur["current"] is None and cur["head"]
    assert _json(cli(["--json", "db", "upgrade"]))["after"] == cur["head"]
    assert _json(cli(["--json", "db", "current"]))["up_to_date"]
    assert _json(cli(["--json", "db", "downgrade", "base", "--yes"]))["after"] is None
    assert cli(["db", "upgrade"]).exit_code == 0
    _one_line_error(cli(["db", "downgrade", "nonexistent-rev", "--yes"]), "migration")


@pytest.mark.parametrize("args", [[], ["ingest"], ["ask"], ["chat"], ["list"], ["show"], ["users"], ["forget"],
                                  ["consolidate"], ["export"], ["setup"], ["bench"], ["db"], ["db", "upgrade"],
                                  ["db", "current"], ["db", "downgrade"]])
def test_help_everywhere(cli, args):
    res = cli([*args, "--help"])
    assert res.exit_code == 0 and "Usage" in res.stdout


def test_passthrough_commands(cli):
    res = cli(["train", "--help"])
    assert res.exit_code == 0 and "--steps" in res.stdout
    listed = cli(["bench", "--list"])
    assert listed.exit_code == 0 and "memory" in listed.stdout
    _one_line_error(cli(["bench", "nope"]), "no benchmark 'nope'")


def test_help_and_store_commands_do_not_load_the_model(cli, monkeypatch):
    loaded = []
    monkeypatch.setattr(cli_main, "make_memory", lambda db, ckpt: _lazy(db, loaded))
    assert cli(["users"]).exit_code == 0 and cli(["list", "-u", "x"]).exit_code == 0
    assert loaded == []


def _lazy(db, loaded):
    from memory_helpers import shared_engine

    from d2l_memory.memory import HashingEmbedder, Memory

    return Memory(lambda: loaded.append(1) or shared_engine(), db, HashingEmbedder())


def test_factory_env_var(cli, monkeypatch, tmp_path):
    monkeypatch.setattr(cli_main, "make_memory", lambda db, ckpt: pytest.fail("the env factory should be used"))
    monkeypatch.setenv("D2L_MEMORY_FACTORY", "memory_helpers:cli_factory")
    res = cli(["ingest", "-u", "alice", str(_write(tmp_path / "a.md", ALICE)), "--json"])
    assert _json(res)["memories"] == 1


def test_reembed(cli):
    cli(["ingest", "-u", "alice", "-"], input=ALICE)
    rep = _json(cli(["reembed", "-u", "alice", "--json"]))
    assert len(rep["ids"]) == 1 and rep["skipped"] == [] and rep["embedding_model"]
    human = cli(["reembed", "-u", "alice"])
    assert human.exit_code == 0 and "re-embedded 1 memories of alice" in human.stdout
    _one_line_error(cli(["reembed", "-u", "nobody"]), "nobody")


def test_ask_with_recalled_text_in_the_prompt(cli):
    mid = _json(cli(["ingest", "-u", "alice", "-", "--json"], input=ALICE))["sources"][0]["ids"][0]
    default = _json(cli(["ask", "-u", "alice", "Where does Alice live?", "--json"]))
    rag = _json(cli(["ask", "-u", "alice", "Where does Alice live?", "--context-tokens", "256", "--no-adapters",
                     "--json"]))
    assert default["in_prompt"] == [] and rag["in_prompt"] == [mid]
    assert rag["usage"]["prompt_tokens"] > default["usage"]["prompt_tokens"] + 10
    human = cli(["ask", "-u", "alice", "Where does Alice live?", "--context-tokens", "256"])
    assert human.exit_code == 0 and f"text in the prompt: {mid[:8]}" in human.stderr
    _one_line_error(cli(["ask", "-u", "alice", "Where does Alice live?", "--no-adapters"]), "use_adapters")
