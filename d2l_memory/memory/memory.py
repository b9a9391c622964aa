"""`Memory`: the API apps call. Ingest text, files and chats as LoRA memories; answer with the relevant ones.

    from d2l_memory.memory import Memory
    mem = Memory.from_defaults()                           # shipped checkpoint, default store, MiniLM
    mem.ingest("alice", "My name is Alice. I live in Lisbon.")
    mem.answer("alice", "Where do I live?").text            # no document in the prompt

Ingest splits input into memory-sized pieces (``MemoryConfig.memory_tokens``, on paragraph boundaries),
internalizes them in batches (one hypernetwork pass each), embeds them and stores adapter + embedding per
user. A query is embedded, the user's most similar memories are selected (top-k above a threshold), their
adapters merged with similarity weights and applied while generating. Optionally (``context_tokens``) their
text also goes into the prompt, or instead of the adapter (``use_adapters=False``: plain RAG); see
:mod:`d2l_memory.memory.context`.

Threads: engine calls are serialized by a lock (the LoRA hooks patch the shared model); the store is
thread-safe per call. The ``a*`` methods run the same code in a worker thread, so they never block the
event loop. The engine (and the default embedder) load on first use, so listing and deleting are fast.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..aio import iterate_in_thread
from ..errors import AdapterError, InputError
from ..store import AdapterStore, MemoryRecord, NewMemory
from ..store import validate as sv
from .config import MemoryConfig, check_context
from .context import select_context, with_context
from .embedders import Embedder, SentenceTransformerEmbedder, embed_checked
from .merge import BIAS_KEY, merge_adapters, selection_weights
from .results import (
    Answer,
    ConsolidationReport,
    ExportReport,
    IngestReport,
    Recall,
    RecalledMemory,
    ReembedReport,
    UnknownUserError,
)
from .sources import check_messages, load_source, split_source

if TYPE_CHECKING:
    from ..adapter import Adapter
    from ..engine import D2L
    from .conversation import Conversation

log = logging.getLogger(__name__)

VLLM_MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # values vLLM accepts for --max-lora-rank
FLUSH_EVERY = 64  # memories written to the store per transaction by ingest_many (bounds RAM)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class _LRU:
    """A small thread-safe LRU cache."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return None

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def drop(self, pred: Callable[[Any], bool]) -> None:
        with self._lock:
            for k in [k for k in self._d if pred(k)]:
                del self._d[k]

    def __len__(self) -> int:
        return len(self._d)


class Memory:
    """Per-user parametric memory: documents and conversations become LoRA adapters, recalled by similarity.

    Args:
        engine: a :class:`~d2l_memory.engine.D2L`, or a zero-argument callable returning one (loaded on first
            use, so store-only operations never load a model).
        store: an :class:`~d2l_memory.store.AdapterStore`, or a database URL (``None``: the default store).
        embedder: picks memories (``name``, ``dim``, ``embed(list[str])``); default all-MiniLM-L6-v2, offline.
        config: a :class:`MemoryConfig` (selection, merging, limits).
    """

    def __init__(self, engine: D2L | Callable[[], D2L], store: AdapterStore | str | None = None,
                 embedder: Embedder | None = None, config: MemoryConfig | None = None):
        if hasattr(engine, "internalize"):
            self._engine, self._engine_factory = engine, None
        elif callable(engine):
            self._engine, self._engine_factory = None, engine
        else:
            raise InputError(f"engine must be a D2L or a callable returning one, got {type(engine).__name__}")
        self._owns_store = not isinstance(store, AdapterStore)
        self.store: AdapterStore = store if isinstance(store, AdapterStore) else AdapterStore(store)
        if embedder is not None and not _is_embedder(embedder):
            raise InputError(f"embedder {embedder!r} lacks name, dim or embed(list[str]); see "
                             "d2l_memory.memory.Embedder")
        self.embedder: Embedder = embedder if embedder is not None else SentenceTransformerEmbedder()
        if config is not None and not isinstance(config, MemoryConfig):
            raise InputError(f"config must be a MemoryConfig, got {type(config).__name__}")
        self.config = config or MemoryConfig()
        self._engine_lock = threading.RLock()  # one generation / internalization at a time
        self._load_lock = threading.Lock()
        self._adapters = _LRU(self.config.adapter_cache_size)  # (user_id, memory_id) -> Adapter
        self._merged = _LRU(self.config.merged_cache_size)  # (user_id, ids, weights, mode, rank) -> (Adapter, kept)

    # ------------------------------------------------------------------------------------ construction

    @classmethod
    def from_defaults(cls, checkpoint: str | Path = "smollm2-135m", db_url: str | None = None, device=None, *,
                      embedder: Embedder | None = None, config: MemoryConfig | None = None) -> Memory:
        """The shipped hypernetwork checkpoint (loaded lazily), the default store and the default embedder.

        ``checkpoint`` is a shipped name or a checkpoint directory; ``db_url`` defaults to
        ``$D2L_MEMORY_DB_URL`` or the SQLite file in the data directory.
        """

        def load() -> D2L:
            from ..engine import D2L

            t0 = time.perf_counter()
            d2l = D2L.from_pretrained(checkpoint, device=device)
            log.info("loaded checkpoint %s on %s in %.1f s", checkpoint, d2l.device, time.perf_counter() - t0)
            return d2l

        return cls(load, db_url, embedder=embedder, config=config)

    @property
    def engine(self) -> D2L:
        """The D2L engine (loaded on first access when a factory was given)."""
        if self._engine is None:
            with self._load_lock:
                if self._engine is None:
                    self._engine = self._engine_factory()
        return self._engine

    @property
    def engine_loaded(self) -> bool:
        return self._engine is not None

    def load(self) -> Memory:
        """Load the engine and the embedder now (they load on first use otherwise)."""
        _ = self.engine
        _ = self.embedder.dim
        return self

    def close(self) -> None:
        """Close the store if this Memory opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        eng = f"{self._engine.base_model}@{self._engine.hypernet_sha}" if self._engine is not None else "not loaded"
        return f"Memory(engine={eng}, store={self.store.config.url!r}, embedder={self.embedder.name!r})"

    # ------------------------------------------------------------------------------------ helpers

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        return embed_checked(self.embedder, texts)

    def _require_memories(self, user_id: str) -> None:
        if self.store.count(user_id) == 0:
            raise UnknownUserError(user_id)

    def _dtype(self):
        import torch

        return getattr(torch, self.config.adapter_dtype)

    def _compatible(self, rec: MemoryRecord) -> bool:
        info, eng = rec.adapter, self.engine
        return info is not None and info.base_model == eng.base_model and info.hypernet_sha == eng.hypernet_sha

    def _load_adapter(self, user_id: str, memory_id: str) -> Adapter:
        """A memory's adapter, decoded once and kept in the LRU cache."""
        from ..adapter import Adapter

        key = (user_id, memory_id)
        ad = self._adapters.get(key)
        if ad is None:
            ad = Adapter.from_bytes(self.store.get_adapter_bytes(user_id, memory_id))
            ad.meta["id"] = memory_id
            self._adapters.put(key, ad)
        return ad

    def _forget_cached(self, user_id: str, ids: Sequence[str] | None = None) -> None:
        gone = set(ids) if ids is not None else None
        self._adapters.drop(lambda k: k[0] == user_id and (gone is None or k[1] in gone))
        self._merged.drop(lambda k: k[0] == user_id and (gone is None or bool(gone & set(k[1]))))

    def _merge(self, user_id: str, ids: list[str], weights: list[float], mode: str, rank: int | None
               ) -> tuple[Adapter, float | None]:
        key = (user_id, tuple(ids), tuple(round(w, 6) for w in weights), mode, rank)
        hit = self._merged.get(key)
        if hit is not None:
            return hit
        adapters = [self._load_adapter(user_id, i) for i in ids]
        out = merge_adapters(adapters, weights, mode=mode, rank=rank)
        self._merged.put(key, out)
        return out

    def _with_system(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        sp = self.config.system_prompt
        if sp and not (messages and messages[0]["role"] == "system"):
            return [{"role": "system", "content": sp}, *messages]
        return messages

    def _gen_kwargs(self, gen: dict[str, Any]) -> dict[str, Any]:
        kw = dict(gen)
        if kw.get("max_new_tokens") is None:
            kw["max_new_tokens"] = self.config.max_new_tokens
        if kw.get("temperature") is None:
            kw["temperature"] = self.config.temperature
        return kw

    # ------------------------------------------------------------------------------------ ingest

    def ingest(self, user_id: str, source: str | Path | list[dict[str, str]], *, kind: str | None = None,
               metadata: dict[str, Any] | None = None, ttl_seconds: float | None = None,
               title: str | None = None) -> list[str]:
        """Remember text, a UTF-8 file (``pathlib.Path``) or chat messages; returns the new memory ids.

        Long input becomes several memories (about ``config.memory_tokens`` tokens each, split on paragraph
        or message boundaries). ``kind`` defaults to "document" ("conversation" for messages). Input that is
        missing, binary, empty or larger than ``config.max_ingest_bytes`` raises before anything is stored;
        re-ingesting the same text returns the existing memory's id.
        """
        return self.ingest_report(user_id, source, kind=kind, metadata=metadata, ttl_seconds=ttl_seconds,
                                  title=title).ids

    def ingest_report(self, user_id: str, source: str | Path | list[dict[str, str]], *, kind: str | None = None,
                      metadata: dict[str, Any] | None = None, ttl_seconds: float | None = None,
                      title: str | None = None, on_progress: Callable[[int, int], None] | None = None
                      ) -> IngestReport:
        """Like :meth:`ingest`, returning an :class:`IngestReport` (ids, tokens, seconds).

        ``on_progress(done, total)`` is called after each internalized batch of memories.
        """
        return self.ingest_many(user_id, [source], kind=kind, metadata=metadata, ttl_seconds=ttl_seconds,
                                titles=[title], on_progress=on_progress)[0]

    def ingest_many(self, user_id: str, sources: Sequence[str | Path | list[dict[str, str]]], *,
                    kind: str | None = None, metadata: dict[str, Any] | None = None,
                    ttl_seconds: float | None = None, titles: Sequence[str | None] | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> list[IngestReport]:
        """Ingest several sources, batching their memories through the hypernetwork; one report per source.

        Every source is validated and split before anything is internalized, so one bad source stores
        nothing. Memories are written to the store every ``FLUSH_EVERY`` memories (bounded RAM); each report's
        ``seconds`` is the batch's wall time shared in proportion to tokens.
        """
        t0 = time.perf_counter()
        user_id = sv.check_user_id(user_id)
        if isinstance(sources, (str, bytes, Path)) or not isinstance(sources, Sequence):
            raise InputError("ingest_many takes a list of sources; use ingest() for one")
        titles = list(titles) if titles is not None else [None] * len(sources)
        if len(titles) != len(sources):
            raise InputError(f"got {len(titles)} titles for {len(sources)} sources")
        extra = sv.check_metadata(metadata)
        ttl = sv.check_ttl_seconds(ttl_seconds)
        if kind is not None:
            sv.check_kind(kind)
        for t in titles:
            if t is not None and (not isinstance(t, str) or not t.strip()):
                raise InputError(f"a title must be a non-empty str or None, got {t!r}")
        loaded = [load_source(src, self.config.max_ingest_bytes) for src in sources]
        engine = self.engine
        jobs = []  # (source index, piece, kind, title, metadata) in order
        for si, (src, title) in enumerate(zip(loaded, titles, strict=True)):
            pieces = split_source(src, self.config.memory_tokens, engine.tokenizer)
            base = (title or src.title).strip()
            n = len(pieces)
            for i, piece in enumerate(pieces):
                meta = {**src.origin, **extra, **({"part": i + 1, "parts": n} if n > 1 else {})}
                jobs.append((si, piece, kind or src.kind, f"{base} ({i + 1}/{n})" if n > 1 else base, meta))
        ids: list[list[str]] = [[] for _ in loaded]
        new = [0] * len(loaded)
        tokens = [0] * len(loaded)
        bs, r = self.config.ingest_batch_size, engine.config.rank
        for g in range(0, len(jobs), FLUSH_EVERY):
            group = jobs[g:g + FLUSH_EVERY]
            texts = [j[1] for j in group]
            adapters: list[Adapter] = []
            for i in range(0, len(texts), bs):
                with self._engine_lock:
                    adapters.extend(engine.internalize(texts[i:i + bs], dtype=self._dtype()))
                if on_progress is not None:
                    on_progress(g + len(adapters), len(jobs))
            vectors = self._embed(texts)
            items = []
            for (si, piece, k, title, meta), ad, vec in zip(group, adapters, vectors, strict=True):
                ad.meta[BIAS_KEY] = r if ad.rank == (ad.meta.get("n_chunks", 0) + 1) * r else 0
                tokens[si] += int(ad.meta.get("n_tokens", 0))
                items.append(NewMemory(
                    kind=k, adapter_bytes=ad.to_bytes(), rank=ad.rank, target_modules=ad.targets,
                    dtype=self.config.adapter_dtype, base_model=engine.base_model,
                    hypernet_sha=engine.hypernet_sha, embedding=vec, embedding_model=self.embedder.name,
                    text=piece if self.config.store_text else None, title=title, metadata=meta, ttl_seconds=ttl))
            before = datetime.now(timezone.utc)
            for (si, *_), rec in zip(group, self.store.add_many(user_id, items), strict=True):
                ids[si].append(rec.id)
                new[si] += rec.created_at >= before
        seconds = time.perf_counter() - t0
        total = max(1, sum(tokens))
        reports = [IngestReport(user_id=user_id, ids=ids[i], new=new[i], n_tokens=tokens[i],
                                seconds=seconds * tokens[i] / total, title=(titles[i] or loaded[i].title).strip())
                   for i in range(len(loaded))]
        log.info("ingested %d memories (%d new, %d tokens) from %d sources for %s in %.2f s", len(jobs), sum(new),
                 sum(tokens), len(loaded), user_id, seconds)
        return reports

    # ------------------------------------------------------------------------------------ recall

    def recall(self, user_id: str, query: str, k: int | None = None) -> Recall:
        """The user's memories most similar to ``query`` (top-k above the threshold) and their merged adapter.

        Raises :class:`UnknownUserError` when the user has no memories at all.
        """
        user_id = sv.check_user_id(user_id)
        self._require_memories(user_id)
        return self._recall(user_id, query, k)

    def _recall(self, user_id: str, query: str, k: int | None, merge: bool = True) -> Recall:
        if not isinstance(query, str) or not query.strip():
            raise InputError("the query is empty; ask something")
        k = self.config.top_k if k is None else sv.check_positive_int(k, "k")
        t0 = time.perf_counter()
        vec = self._embed([query])[0]
        timings = {"embed": _ms(t0)}
        t1 = time.perf_counter()
        hits = self.store.search(user_id, vec, k, min_score=self.config.min_similarity,
                                 embedding_model=self.embedder.name)
        timings["search"] = _ms(t1)
        good, skipped = [], []
        for rec, score in hits:
            (good if self._compatible(rec) else skipped).append((rec, float(score)))
        if skipped:
            log.warning("skipped %d memories of %s made by another base model or hypernetwork (%s); re-ingest "
                        "them with this engine", len(skipped), user_id, ", ".join(r.id for r, _ in skipped))
        weights = selection_weights([s for _, s in good], self.config.weighting, self.config.softmax_temperature,
                                    self.config.weight_norm)
        memories = [RecalledMemory(id=rec.id, score=s, weight=w, kind=rec.kind, title=rec.title, text=rec.text,
                                   metadata=rec.metadata, created_at=rec.created_at)
                    for (rec, s), w in zip(good, weights, strict=True)]
        adapter, kept = None, None
        if memories and merge:
            t2 = time.perf_counter()
            rank = self.config.merge_rank if self.config.merge == "svd" else None
            adapter, kept = self._merge(user_id, [m.id for m in memories], weights, self.config.merge, rank)
            timings["merge"] = _ms(t2)
        return Recall(user_id=user_id, query=query, memories=memories, adapter=adapter, kept_fraction=kept,
                      skipped=[r.id for r, _ in skipped], timings=timings)

    # ------------------------------------------------------------------------------------ generation

    def answer(self, user_id: str, question: str, *, k: int | None = None, context_tokens: int | None = None,
               use_adapters: bool | None = None, **gen: Any) -> Answer:
        """Answer a question with the user's relevant memories applied (by default no memory text in the prompt).

        ``context_tokens`` / ``use_adapters`` override the config's (see :class:`MemoryConfig`): a budget > 0
        also puts the best recalled memories' text into the prompt; ``use_adapters=False`` with a budget is
        plain retrieval-augmented generation. ``gen``: ``max_new_tokens``, ``temperature``, ``stop`` and any
        ``transformers`` generate argument. Raises :class:`UnknownUserError` when the user has no memories.
        """
        user_id = sv.check_user_id(user_id)
        self._require_memories(user_id)
        if not isinstance(question, str) or not question.strip():
            raise InputError("the question is empty; ask something")
        return self._generate(user_id, [{"role": "user", "content": question}], question, k,
                              self._context_settings(context_tokens, use_adapters), gen)

    def generate(self, user_id: str, messages: list[dict[str, str]], *, k: int | None = None,
                 context_tokens: int | None = None, use_adapters: bool | None = None, **gen: Any) -> Answer:
        """Reply to a chat (``[{"role", "content"}, ...]``) with the memories relevant to its last user message.

        A user without memories gets the plain base model (a new user can start chatting). Recalled text, when
        a context budget is set, goes before the last user message.
        """
        user_id = sv.check_user_id(user_id)
        msgs = check_messages(messages)
        return self._generate(user_id, msgs, _query_of(msgs), k, self._context_settings(context_tokens, use_adapters),
                              gen)

    def _context_settings(self, context_tokens: int | None, use_adapters: bool | None) -> tuple[int, bool]:
        budget = self.config.context_tokens if context_tokens is None else context_tokens
        adapters = self.config.use_adapters if use_adapters is None else use_adapters
        check_context(budget, adapters)
        if budget and not self.config.store_text:
            raise InputError(f"context_tokens={budget} needs the memories' text, but this Memory was configured "
                             "with store_text=False. Fix: context_tokens=0")
        return budget, adapters

    def _chat_recall(self, user_id: str, query: str, k: int | None, merge: bool = True) -> Recall:
        if self.store.count(user_id) == 0:
            return Recall(user_id=user_id, query=query, memories=[], adapter=None)
        return self._recall(user_id, query, k, merge)

    def _prepare(self, user_id: str, messages: list[dict[str, str]], query: str, k: int | None,
                 settings: tuple[int, bool], gen: dict[str, Any]) -> tuple[list[dict[str, str]], Recall, list[str]]:
        """Recall for ``query``; the prompt (recalled text put in within the budget) and the ids it holds."""
        budget, use_adapters = settings
        rec = self._chat_recall(user_id, query, k, merge=use_adapters)
        messages, in_prompt = self._with_system(messages), []
        if budget and rec.memories:
            engine = self.engine
            room = engine.context_window - len(engine.prompt_ids(messages)) - int(gen["max_new_tokens"]) - 64
            chosen = select_context(rec.memories, engine.count_tokens, min(budget, max(room, 0)))
            messages = with_context(messages, [m.text for m in chosen])
            in_prompt = [m.id for m in chosen]
            scale = self.config.hybrid_adapter_scale
            if in_prompt and rec.adapter is not None and scale != 1.0:  # hybrid: the text leads, the adapter shapes
                rec = dataclasses.replace(rec, adapter=rec.adapter.scaled(scale))
        return messages, rec, in_prompt

    def _generate(self, user_id: str, messages: list[dict[str, str]], query: str, k: int | None,
                  settings: tuple[int, bool], gen: dict[str, Any]) -> Answer:
        t0 = time.perf_counter()
        gen = self._gen_kwargs(gen)
        prompt, rec, in_prompt = self._prepare(user_id, messages, query, k, settings, gen)
        t1 = time.perf_counter()
        with self._engine_lock:
            comp = self.engine.complete(prompt, rec.adapter, **gen)[0]
        timings = {"recall": (t1 - t0) * 1000.0, "generate": _ms(t1), "total": _ms(t0)}
        return Answer(text=comp.text, memories=rec.memories, prompt_tokens=comp.prompt_tokens,
                      completion_tokens=comp.completion_tokens, finish_reason=comp.finish_reason, timings=timings,
                      in_prompt=in_prompt)

    def stream(self, user_id: str, messages: list[dict[str, str]] | str, *, k: int | None = None,
               context_tokens: int | None = None, use_adapters: bool | None = None, **gen: Any) -> AnswerStream:
        """Like :meth:`generate` (a str is one user message), yielding text pieces as they are generated.

        The returned :class:`AnswerStream` is an iterator of str; after it is exhausted, ``.answer`` holds
        the full :class:`Answer`. Closing it early (``break``) stops the generation.
        """
        user_id = sv.check_user_id(user_id)
        msgs = check_messages([{"role": "user", "content": messages}] if isinstance(messages, str) else messages)
        settings = self._context_settings(context_tokens, use_adapters)
        gen = self._gen_kwargs(gen)
        prompt, rec, in_prompt = self._prepare(user_id, msgs, _query_of(msgs), k, settings, gen)
        return AnswerStream(self, prompt, rec, gen, in_prompt)

    # ------------------------------------------------------------------------------------ forgetting

    def forget(self, user_id: str, memory_id: str | None = None, *, everything: bool = False,
               purge: bool = False) -> list[str]:
        """Forget one memory, or all of a user's memories (``everything=True``); returns the ids forgotten.

        Forgotten memories are never recalled again (soft delete: history and lineage are kept);
        ``purge=True`` also removes their rows and adapter files for good.
        """
        user_id = sv.check_user_id(user_id)
        if (memory_id is None) == (not everything):
            raise InputError("pass either a memory_id or everything=True (not both, not neither)")
        if self.store.count(user_id) == 0:
            raise UnknownUserError(user_id)
        if memory_id is not None:
            self.store.delete(user_id, sv.check_memory_id(memory_id))
            ids = [memory_id]
        else:
            ids = [r.id for r in self.store.list_memories(user_id)]
            self.store.delete_all(user_id)
        self._forget_cached(user_id, ids)
        if purge:
            self.store.purge(user_id)
        log.info("forgot %d memories of %s%s", len(ids), user_id, " (purged)" if purge else "")
        return ids

    # ------------------------------------------------------------------------------------ consolidation

    def consolidate(self, user_id: str, rank: int | None = None, kinds: Sequence[str] = ("conversation",), *,
                    min_memories: int = 2, title: str | None = None) -> ConsolidationReport:
        """Merge many small memories (by default conversation ones) into one fixed-rank "consolidated" memory.

        The adapters are summed (rank concatenation, the bias block once) and compressed to ``rank`` (default
        ``config.consolidate_rank``) by truncated SVD; the report says how much of the summed weight delta that
        keeps. The new memory records the sources as lineage parents; the sources are soft-deleted.
        """
        user_id = sv.check_user_id(user_id)
        rank = self.config.consolidate_rank if rank is None else sv.check_positive_int(rank, "rank")
        kinds = sv.check_kinds(list(kinds) if not isinstance(kinds, str) else kinds)
        self._require_memories(user_id)
        recs = [r for r in self.store.list_memories(user_id, kind=kinds) if r.adapter is not None]
        recs.reverse()  # oldest first
        groups: dict[tuple[str, str], list[MemoryRecord]] = {}
        for r in recs:
            groups.setdefault((r.adapter.base_model, r.adapter.hypernet_sha), []).append(r)
        main = max(groups.values(), key=len) if groups else []
        skipped = [r.id for r in recs if r not in main]
        ids = [r.id for r in main]
        if len(main) < max(2, min_memories):
            log.info("nothing to consolidate for %s: %d %s memories", user_id, len(main), "/".join(kinds))
            return ConsolidationReport(user_id=user_id, memory_id=None, source_ids=ids,
                                       rank_before=sum(r.adapter.rank for r in main),
                                       rank_after=sum(r.adapter.rank for r in main), kept_fraction=None,
                                       bytes_before=sum(r.adapter.size_bytes for r in main),
                                       bytes_after=sum(r.adapter.size_bytes for r in main), skipped=skipped)
        adapters = [self._load_adapter(user_id, i) for i in ids]
        merged, kept = merge_adapters(adapters, None, mode="svd", rank=rank)
        merged = merged.to(dtype=self._dtype())
        merged.meta["parents"] = ids
        vec = self._consolidated_embedding(user_id, main)
        info = main[0].adapter
        texts = [r.text for r in main if r.text]
        payload = merged.to_bytes()
        new = self.store.add_memory(
            user_id, "consolidated", adapter_bytes=payload, rank=merged.rank, target_modules=merged.targets,
            dtype=self.config.adapter_dtype, base_model=info.base_model, hypernet_sha=info.hypernet_sha,
            embedding=vec, embedding_model=self.embedder.name,
            text="\n\n".join(texts) if texts and self.config.store_text else None,
            title=title or f"{len(ids)} {'/'.join(kinds)} memories, consolidated",
            metadata={"consolidated_from": len(ids), "kinds": list(kinds), "rank": rank,
                      "kept_fraction": kept}, parents=ids, dedup=False)
        for i in ids:
            self.store.delete(user_id, i)
        self._forget_cached(user_id, ids)
        report = ConsolidationReport(user_id=user_id, memory_id=new.id, source_ids=ids,
                                     rank_before=sum(a.rank for a in adapters), rank_after=merged.rank,
                                     kept_fraction=kept, bytes_before=sum(r.adapter.size_bytes for r in main),
                                     bytes_after=len(payload), skipped=skipped)
        log.info("consolidated %d memories of %s into %s (rank %d -> %d, kept %.3f)", len(ids), user_id, new.id,
                 report.rank_before, report.rank_after, kept)
        return report

    def _consolidated_embedding(self, user_id: str, recs: list[MemoryRecord]) -> np.ndarray:
        """The normalized mean of the sources' embeddings (each source stays findable)."""
        vecs = []
        for r in recs:
            if self.embedder.name in r.embedding_models:
                vecs.append(self.store.get_embedding(user_id, r.id, self.embedder.name))
            elif r.text:
                vecs.append(self._embed([r.text])[0])
        if not vecs:
            return self._embed([" ".join(r.title or "" for r in recs) or "conversation"])[0]
        v = np.mean(np.stack(vecs), axis=0)
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)

    # ------------------------------------------------------------------------------------ re-embedding

    def reembed(self, user_id: str, *, batch_size: int = 256) -> ReembedReport:
        """Embed a user's live memories again, from their stored text, with this Memory's embedder.

        Queries only search embeddings made by the same embedder (by name), so after changing the embedder,
        or for memories embedded before long memories were embedded whole, this makes them findable as
        new ones are. Adapters are untouched and the engine is not loaded. Memories stored without their
        text (``store_text=False``) cannot be re-embedded; they are listed in ``skipped``. Each batch is
        written all or nothing, and running it again is harmless.
        """
        t0 = time.perf_counter()
        user_id = sv.check_user_id(user_id)
        batch_size = sv.check_positive_int(batch_size, "batch_size")
        self._require_memories(user_id)
        recs = self.store.list_memories(user_id)
        todo = [r for r in recs if r.text]
        done: list[str] = []
        for i in range(0, len(todo), batch_size):
            part = todo[i:i + batch_size]
            vectors = self._embed([r.text for r in part])
            self.store.set_embeddings(user_id, self.embedder.name,
                                      {r.id: vec for r, vec in zip(part, vectors, strict=True)})
            done.extend(r.id for r in part)
        report = ReembedReport(user_id=user_id, embedding_model=self.embedder.name, ids=done,
                               skipped=[r.id for r in recs if not r.text], seconds=time.perf_counter() - t0)
        log.info("re-embedded %d memories of %s with %s (%d without text skipped) in %.2f s", len(done), user_id,
                 self.embedder.name, len(report.skipped), report.seconds)
        return report

    # ------------------------------------------------------------------------------------ export

    def export_peft(self, user_id: str, memory_ids: Sequence[str] | None, directory: str | Path, *,
                    rank: int | None = None) -> ExportReport:
        """Write the merged adapter of some memories (``None``: all of the user's) as a PEFT LoRA directory.

        The directory loads with ``peft.PeftModel.from_pretrained`` and ``vllm serve --enable-lora``; the
        report names the smallest ``--max-lora-rank`` that fits. ``rank`` compresses the merge (truncated SVD).
        """
        user_id = sv.check_user_id(user_id)
        self._require_memories(user_id)
        if memory_ids is None:
            ids = [r.id for r in self.store.list_memories(user_id) if r.adapter is not None]
        else:
            if isinstance(memory_ids, str):
                memory_ids = [memory_ids]
            ids = list(dict.fromkeys(sv.check_memory_id(i) for i in memory_ids))
            if not ids:
                raise InputError("memory_ids is empty; pass ids, or None for all of the user's memories")
            for i in ids:
                self.store.get_memory(user_id, i)  # MemoryNotFound for another user's or a deleted id
        recs = {i: self.store.get_memory(user_id, i).adapter for i in ids}
        ref = next(iter(recs.values()))
        bad = [i for i, a in recs.items() if (a.base_model, a.hypernet_sha) != (ref.base_model, ref.hypernet_sha)]
        if bad:
            raise AdapterError(f"memories {bad} were made by another base model or hypernetwork than {ids[0]}; "
                               "export them separately")
        if rank is not None:
            rank = sv.check_positive_int(rank, "rank")
        adapters = [self._load_adapter(user_id, i) for i in ids]
        merged, kept = merge_adapters(adapters, None, mode="svd" if rank else "concat", rank=rank)
        path = merged.to(dtype=self._dtype()).save_peft(directory)
        hub = _hub_id(merged.base_model)
        if hub != merged.base_model:
            import json

            cfg_file = path / "adapter_config.json"
            cfg = json.loads(cfg_file.read_text())
            cfg["base_model_name_or_path"] = hub
            cfg_file.write_text(json.dumps(cfg, indent=2))
        max_rank = next((r for r in VLLM_MAX_LORA_RANKS if r >= merged.rank), None)
        if max_rank is None:
            log.warning("exported rank %d is above vLLM's largest --max-lora-rank (512); pass rank= to compress",
                        merged.rank)
        return ExportReport(path=Path(path), memory_ids=ids, rank=merged.rank, base_model=hub, kept_fraction=kept,
                            max_lora_rank=max_rank)

    # ------------------------------------------------------------------------------------ store passthroughs

    def list_memories(self, user_id: str, kind: str | Sequence[str] | None = None, *, limit: int | None = None,
                      offset: int = 0, metadata: dict[str, Any] | None = None) -> list[MemoryRecord]:
        """The user's live memories, newest first."""
        return self.store.list_memories(user_id, kind, metadata=metadata, limit=limit, offset=offset)

    def get_memory(self, user_id: str, memory_id: str) -> MemoryRecord:
        return self.store.get_memory(user_id, memory_id)

    def count(self, user_id: str, kind: str | Sequence[str] | None = None) -> int:
        return self.store.count(user_id, kind)

    def list_users(self):
        return self.store.list_users()

    def history(self, user_id: str, memory_id: str):
        return self.store.history(user_id, memory_id)

    def lineage(self, user_id: str, memory_id: str):
        return self.store.lineage(user_id, memory_id)

    def export_user(self, user_id: str, dest: str | Path) -> Path:
        """All of a user's memories (records, adapters, embeddings, lineage) as a directory or tar archive."""
        return self.store.export_user(user_id, dest)

    def import_user(self, src: str | Path, *, user_id: str | None = None, new_ids: bool = False):
        return self.store.import_user(src, user_id=user_id, new_ids=new_ids)

    # ------------------------------------------------------------------------------------ conversations

    def conversation(self, user_id: str, every_n_turns: int = 4, keep_recent: int = 4, *,
                     metadata: dict[str, Any] | None = None) -> Conversation:
        """A chat session that keeps recent turns in the prompt and internalizes older ones as memories."""
        from .conversation import Conversation

        return Conversation(self, user_id, every_n_turns=every_n_turns, keep_recent=keep_recent, metadata=metadata)

    # ------------------------------------------------------------------------------------ async

    async def aingest(self, user_id: str, source: str | Path | list[dict[str, str]], **kw: Any) -> list[str]:
        """:meth:`ingest` in a worker thread."""
        return await asyncio.to_thread(self.ingest, user_id, source, **kw)

    async def aingest_many(self, user_id: str, sources: Sequence[Any], **kw: Any) -> list[IngestReport]:
        """:meth:`ingest_many` in a worker thread."""
        return await asyncio.to_thread(self.ingest_many, user_id, sources, **kw)

    async def arecall(self, user_id: str, query: str, k: int | None = None) -> Recall:
        """:meth:`recall` in a worker thread."""
        return await asyncio.to_thread(self.recall, user_id, query, k)

    async def aanswer(self, user_id: str, question: str, **kw: Any) -> Answer:
        """:meth:`answer` in a worker thread."""
        return await asyncio.to_thread(self.answer, user_id, question, **kw)

    async def agenerate(self, user_id: str, messages: list[dict[str, str]], **kw: Any) -> Answer:
        """:meth:`generate` in a worker thread."""
        return await asyncio.to_thread(self.generate, user_id, messages, **kw)

    async def aforget(self, user_id: str, memory_id: str | None = None, **kw: Any) -> list[str]:
        """:meth:`forget` in a worker thread."""
        return await asyncio.to_thread(self.forget, user_id, memory_id, **kw)

    async def aconsolidate(self, user_id: str, rank: int | None = None, **kw: Any) -> ConsolidationReport:
        """:meth:`consolidate` in a worker thread."""
        return await asyncio.to_thread(self.consolidate, user_id, rank, **kw)

    async def areembed(self, user_id: str, **kw: Any) -> ReembedReport:
        """:meth:`reembed` in a worker thread."""
        return await asyncio.to_thread(self.reembed, user_id, **kw)

    async def astream(self, user_id: str, messages: list[dict[str, str]] | str, **kw: Any) -> AsyncIterator[str]:
        """:meth:`stream` as an async iterator; generation runs in a worker thread."""
        stream = await asyncio.to_thread(self.stream, user_id, messages, **kw)
        try:
            async for piece in iterate_in_thread(stream):
                yield piece
        finally:
            stream.close()


def _is_embedder(obj: Any) -> bool:
    """Has name, dim and embed (checked statically: reading ``dim`` may load a model)."""
    import inspect

    for attr in ("name", "dim", "embed"):
        try:
            inspect.getattr_static(obj, attr)
        except AttributeError:
            return False
    return callable(getattr(obj, "embed", None))


def _query_of(messages: list[dict[str, str]]) -> str:
    """What a chat recalls by: its last non-empty user message (else its last non-empty message)."""
    for m in reversed(messages):
        if m["role"] == "user" and m["content"].strip():
            return m["content"]
    return next(m["content"] for m in reversed(messages) if m["content"].strip())


def _hub_id(base_model: str) -> str:
    from ..models import NAMED_MODELS

    return NAMED_MODELS[base_model].hub_id if base_model in NAMED_MODELS else base_model


class AnswerStream(Iterator[str]):
    """Text pieces of a reply as they are generated (a background thread runs the generation).

    Attributes: ``memories`` (the recalled memories), ``text`` (what was streamed so far) and ``answer``
    (the full :class:`Answer`, once the stream is exhausted).
    """

    def __init__(self, memory: Memory, messages: list[dict[str, str]], rec: Recall, gen: dict[str, Any],
                 in_prompt: list[str]):
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        engine = memory.engine
        self.memories = rec.memories
        self.text = ""
        self.answer: Answer | None = None
        self._cancel = threading.Event()
        self._error: BaseException | None = None
        self._t0 = time.perf_counter()
        self._streamer = TextIteratorStreamer(engine.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel = self._cancel

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                import torch

                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        kw = dict(gen, streamer=self._streamer)
        extra = list(kw.pop("stopping_criteria", None) or [])
        kw["stopping_criteria"] = StoppingCriteriaList([*extra, _Cancelled()])

        def run() -> None:
            try:
                with memory._engine_lock:
                    comp = engine.complete(messages, rec.adapter, **kw)[0]
                self.answer = Answer(text=comp.text, memories=rec.memories, prompt_tokens=comp.prompt_tokens,
                                     completion_tokens=comp.completion_tokens, finish_reason=comp.finish_reason,
                                     timings={"recall": sum(rec.timings.values()), "total": _ms(self._t0)},
                                     in_prompt=in_prompt)
            except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
                self._error = e
                self._streamer.end()

        self._thread = threading.Thread(target=run, name="d2l-memory-stream", daemon=True)
        self._thread.start()
        self._it = iter(self._streamer)
        self._finished = False

    def __next__(self) -> str:
        while True:
            if self._finished:
                raise StopIteration
            try:
                piece = next(self._it)
            except StopIteration:
                self._finished = True
                self._thread.join()
                if self._error is not None:
                    err, self._error = self._error, None
                    raise err from None
                raise
            if piece:
                self.text += piece
                return piece

    def close(self) -> None:
        """Stop the generation (if still running) and wait for the worker thread."""
        self._cancel.set()
        if not self._finished:
            for _ in self._it:  # drain up to the end-of-stream signal
                pass
            self._finished = True
        self._thread.join()
        self._error = None
