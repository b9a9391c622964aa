"""Plain-text tokenization (no special tokens, no chat template), without importing torch."""

from __future__ import annotations


def text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of plain text: no special tokens, no chat template."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def count_tokens(tokenizer, text: str) -> int:
    """Tokens of plain text: for budgets, chunk sizes and haystack lengths."""
    return len(text_ids(tokenizer, text))
