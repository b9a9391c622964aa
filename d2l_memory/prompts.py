"""Prompt formats shared by the teacher, the in-context baseline and the memory layer."""

from __future__ import annotations


def context_prompt(document: str, question: str) -> str:
    """The user turn of the teacher / in-context baseline: the document, then the question."""
    return (f"Here is some information.\n\n{document.strip()}\n\n---\n\nUsing the information above, answer "
            f"briefly.\n{question.strip()}")
