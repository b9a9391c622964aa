"""An agent loop on ChatD2LMemory with a minimal ReAct-style text protocol (no native tool calling).

The model may ask for a calculation by writing a line `CALC: <arithmetic>`; the loop evaluates it and
answers with an `Observation: <result>` message, until the model replies without a CALC line (or
`max_steps` is reached). Only the last few messages stay in the prompt: with memorize=True the
conversation memory internalizes the exchange as LoRA memories, so older turns are recalled from
memory rather than from the prompt.

    python examples/agent_loop.py                      # scripted demo on the shipped checkpoint
    python examples/agent_loop.py --interactive --user sam
"""

from __future__ import annotations

import argparse
import ast
import operator
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from d2l_memory.integrations.langchain import ChatD2LMemory
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

SYSTEM = ("You are a helpful assistant. To compute arithmetic, write one line `CALC: <expression>` and stop; "
          "you will get `Observation: <result>`. Otherwise answer directly and briefly.")
CALC_RE = re.compile(r"^\s*CALC:\s*(.+?)\s*$", re.MULTILINE)
SCRIPT = ["Hi, I'm Sam. My favourite colour is teal and I have three cats.",
          "What is 17 * 23?",
          "How many cats do I have, and what is my favourite colour?"]

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.USub: operator.neg,
        ast.UAdd: operator.pos}


def calculate(expression: str) -> str:
    """Evaluate plain arithmetic (numbers, + - * / // % **, parentheses); anything else is an error."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value,
                                                                                                       bool):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise ValueError("exponent too large")
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"unsupported expression: {ast.dump(node)[:40]}")

    try:
        value = ev(ast.parse(expression.replace("^", "**"), mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError) as e:
        return f"error: {e}"
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def agent_turn(chat: BaseChatModel, history: list[BaseMessage], user_text: str, *, config: dict | None = None,
               max_steps: int = 3, window: int = 4) -> str:
    """One user turn: think/act/observe until a plain answer. `history` is updated in place."""
    history.append(HumanMessage(user_text))
    reply = ""
    for _ in range(max_steps):
        prompt = [SystemMessage(SYSTEM), *history[-window:]]
        msg = chat.invoke(prompt, config=config, stop=["Observation:"])
        reply = msg.text.strip()
        history.append(msg)
        m = CALC_RE.search(reply)
        if m is None:
            return reply
        history.append(HumanMessage(f"Observation: {calculate(m.group(1))}"))
    return reply


def run(chat: BaseChatModel, user_id: str, inputs: Iterable[str], **kw) -> list[tuple[str, str]]:
    history: list[BaseMessage] = []
    config = {"configurable": {"user_id": user_id}}
    return [(text, agent_turn(chat, history, text, config=config, **kw)) for text in inputs]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="smollm2-135m", help="shipped checkpoint name or directory")
    ap.add_argument("--db-url", default=None, help="store URL (default: a temporary SQLite file)")
    ap.add_argument("--user", default="sam")
    ap.add_argument("--interactive", action="store_true", help="read user turns from stdin (empty line quits)")
    args = ap.parse_args(argv)

    from d2l_memory.memory import Memory

    def lines() -> Iterable[str]:
        while (text := input("you> ").strip()):
            yield text

    with tempfile.TemporaryDirectory() as tmp:
        db_url = args.db_url or f"sqlite:///{Path(tmp) / 'memory.db'}"
        with Memory.from_defaults(checkpoint=args.checkpoint, db_url=db_url) as memory:
            chat = ChatD2LMemory(memory=memory, max_tokens=64, temperature=0, memorize=True, every_n_turns=2,
                                 keep_recent=0)
            inputs = lines() if args.interactive else SCRIPT
            history: list[BaseMessage] = []
            for text in inputs:
                if not args.interactive:
                    print(f"you> {text}")
                answer = agent_turn(chat, history, text, config={"configurable": {"user_id": args.user}})
                print(f"bot> {answer}")
            chat.flush(args.user)
            print(f"\n{args.user} now has {memory.count(args.user)} memories")


if __name__ == "__main__":
    main()
