"""Recalled memories as prompt text: the optional retrieval-augmented part of an answer.

By default a memory reaches the model only through its adapter. With a context budget
(``MemoryConfig.context_tokens`` or ``context_tokens=`` per call), the stored text of the best recalled
memories is also put into the last user message, in the same format the hypernetwork's teacher and the
in-context baseline use (:func:`d2l_memory.prompts.context_prompt`). With ``use_adapters=False`` as well,
this is plain retrieval-augmented generation over the same store, embeddings and selection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..prompts import context_prompt
from .results import RecalledMemory

SEPARATOR = "\n\n"


def select_context(memories: Sequence[RecalledMemory], count_tokens: Callable[[str], int],
                   budget: int) -> list[RecalledMemory]:
    """The memories whose text goes into the prompt: best first, as many as fit in ``budget`` tokens.

    A memory without stored text (``store_text=False``) or one that would overflow the budget is left out;
    a smaller one after it may still fit. The order of ``memories`` (best first) is kept.
    """
    chosen, used = [], 0
    for m in memories:
        if not m.text or not m.text.strip():
            continue
        n = count_tokens(m.text)
        if used + n <= budget:
            chosen.append(m)
            used += n
    return chosen


def with_context(messages: list[dict[str, str]], texts: Sequence[str]) -> list[dict[str, str]]:
    """``messages`` with ``texts`` put before the content of the last user message (a copy)."""
    if not texts:
        return messages
    idx = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if idx is None:  # a chat without a user turn: the information becomes one
        return [*messages, {"role": "user", "content": context_prompt(SEPARATOR.join(texts), "")}]
    out = list(messages)
    out[idx] = {**messages[idx], "content": context_prompt(SEPARATOR.join(texts), messages[idx]["content"])}
    return out
