"""Plain-text tokenization (no special tokens, no chat template), without importing torch."""

from __future__ import annotations

import bisect


def text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of plain text: no special tokens, no chat template."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def count_tokens(tokenizer, text: str) -> int:
    """Tokens of plain text: for budgets, chunk sizes and haystack lengths."""
    return len(text_ids(tokenizer, text))


def token_windows(tokenizer, text: str, size: int) -> list[tuple[str, int]]:
    """``text`` cut into consecutive pieces of at most ``size`` tokens, with each piece's token count.

    A text that fits is returned whole. Cuts fall on the last token that starts a word (follows whitespace)
    at or before the limit, so no word is split between pieces unless one word alone is longer than ``size``.
    A slow tokenizer (no offsets) gets plain windows of ``size`` token ids, decoded.
    """
    if size <= 0:
        raise ValueError(f"size must be a positive number of tokens, got {size!r}")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids, offsets = enc["input_ids"], enc.get("offset_mapping")
    n = len(ids)
    if n <= size:
        return [(text, n)]
    if offsets is None:
        return [(tokenizer.decode(ids[i:i + size]), len(ids[i:i + size])) for i in range(0, n, size)]
    starts = [i for i in range(1, n) if offsets[i][0] > offsets[i - 1][1]]  # tokens after whitespace
    out, i = [], 0
    while i < n:
        j = min(i + size, n)
        if j < n:
            k = bisect.bisect_right(starts, j) - 1  # the last word start at or before the limit
            j = starts[k] if k >= 0 and starts[k] > i else j
        piece = text[offsets[i][0]:offsets[j - 1][1]].strip()
        if piece:
            out.append((piece, j - i))
        i = j
    return out or [(text, n)]
