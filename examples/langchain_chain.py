"""LCEL chain over d2l-memory: a document becomes a user's LoRA memory; the chain answers from it.

The prompt holds only the question: the document reaches the model as an adapter, recalled for the user
named in the call's config. Another user, asking the same questions through the same chain, gets answers
without it.

    python examples/langchain_chain.py                       # shipped checkpoint, throwaway SQLite store
    python examples/langchain_chain.py --checkpoint runs/smollm2/final --db-url sqlite:////tmp/mem.db
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from d2l_memory.integrations.langchain import ChatD2LMemory
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

DOCUMENT = """Maria Keller is a marine biologist who lives in Bergen, Norway.
She works at the Institute of Marine Research, where she studies cold-water coral reefs.
Her dog is a border collie named Pixel. On weekends she sails a small boat called Skarv."""

QUESTIONS = ["Where does Maria live?", "What is the name of Maria's dog?", "What does Maria study?"]


def build_chain(chat: ChatD2LMemory):
    """prompt | model | parser: nothing about the user in the prompt."""
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    return prompt | chat | StrOutputParser()


def run(memory, *, user_id: str = "maria", other_user: str = "someone-else", max_tokens: int = 48,
        questions: list[str] = QUESTIONS) -> dict[str, list[tuple[str, str]]]:
    """Ingest DOCUMENT for `user_id`, then answer `questions` as that user and as `other_user`."""
    memory.ingest(user_id, DOCUMENT, title="About Maria")
    chain = build_chain(ChatD2LMemory(memory=memory, max_tokens=max_tokens, temperature=0))
    inputs = [{"question": q} for q in questions]
    out = {}
    for user in (user_id, other_user):
        answers = chain.batch(inputs, config={"configurable": {"user_id": user}})
        out[user] = list(zip(questions, answers, strict=True))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="smollm2-135m", help="shipped checkpoint name or directory")
    ap.add_argument("--db-url", default=None, help="store URL (default: a temporary SQLite file)")
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args(argv)

    from d2l_memory.memory import Memory

    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.db_url or f"sqlite:///{Path(tmp) / 'memory.db'}"
        with Memory.from_defaults(checkpoint=args.checkpoint, db_url=db_url) as memory:
            for user, qa in run(memory, max_tokens=args.max_tokens).items():
                print(f"\n== as {user}")
                for q, a in qa:
                    print(f"Q: {q}\nA: {a}")


if __name__ == "__main__":
    main()
