"""LangChain chat model backed by d2l-memory: every call answers with the caller's memories as LoRA adapters.

    from d2l_memory.integrations.langchain import ChatD2LMemory

    chat = ChatD2LMemory(memory=mem)                 # or ChatD2LMemory() for Memory.from_defaults()
    mem.ingest("alice", "Alice's cat is called Miso.")
    chat.invoke("What is my cat called?", config={"configurable": {"user_id": "alice"}})

The user is chosen per call: `config={"configurable": {"user_id": ...}}` (also through LCEL chains,
`with_config` and agent loops), a `user_id=` call keyword (`invoke(..., user_id=...)` or `bind`), or
else the `user_id` given at construction. Each call recalls that user's memories for the latest user
message, generates with their combined adapter (no memory text enters the prompt), and, with
`memorize=True`, feeds the exchange to the user's conversation memory. `response_metadata` names the
memories used (`memories`: id and score) next to `model_name` and `finish_reason`; `usage_metadata`
counts prompt and completion tokens. Tool calling and structured output are not offered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from d2l_memory.aio import iterate_in_thread

log = logging.getLogger(__name__)

PROVIDER = "d2l-memory"


# ---- messages -------------------------------------------------------------------------------------
def _role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ChatMessage):
        role = message.role.lower()
        return {"human": "user", "ai": "assistant", "developer": "system"}.get(role, role)
    if isinstance(message, ToolMessage):
        return "user"  # chat templates rarely know a tool role; a tool result reads as user input
    return "user"


def _text(message: BaseMessage) -> str:
    text = message.text if isinstance(message.text, str) else message.text()  # property in langchain-core 1.x
    if isinstance(message, ToolMessage) and text:
        return f"Tool result ({message.name or message.tool_call_id}): {text}"
    return text


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages -> [{"role", "content"}] for the engine's chat template.

    Only text is kept (image, audio and file blocks are not supported and are dropped); messages with
    no text are skipped; consecutive messages of the same role are merged, so templates that require
    alternating roles accept the result.
    """
    out: list[dict[str, str]] = []
    for m in messages:
        text = _text(m).strip()
        if not text:
            continue
        role = _role(m)
        if out and out[-1]["role"] == role:
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": role, "content": text})
    if not out:
        raise ValueError("ChatD2LMemory needs at least one message with text content")
    return out


def latest_user_text(chat: list[dict[str, str]]) -> str:
    """The query for recall: the latest user message (or the last message when there is none)."""
    for m in reversed(chat):
        if m["role"] == "user":
            return m["content"]
    return chat[-1]["content"]


@dataclass
class _Call:
    """One resolved call: the user, the chat for the engine and the generation settings."""

    user_id: str
    chat: list[dict[str, str]]
    query: str  # the latest user message: what recall searches with, and the user turn memorize records
    gen: dict[str, Any]
    stop: list[str]
    memorize: bool
    model_name: str


# ---- stop-aware incremental text ------------------------------------------------------------------
class _StreamText:
    """Turns raw streamed text into the pieces of the final answer (stripped, cut at the first stop).

    Text that might still become a stop sequence, and trailing whitespace, is held back until it is
    decided, so the streamed pieces always concatenate to exactly the non-streamed answer.
    """

    def __init__(self, stop: Sequence[str]):
        self.stop = [s for s in stop if s]
        self.raw = ""
        self.sent = 0
        self.stopped = False

    def _visible(self, final: bool) -> str:
        text = self.raw
        cut = min((text.index(s) for s in self.stop if s in text), default=None)
        if cut is not None:
            text, self.stopped, final = text[:cut], True, True
        text = text.lstrip()
        if not final:
            hold = 0
            for s in self.stop:  # the longest tail that is a proper prefix of a stop sequence
                for n in range(min(len(s) - 1, len(text)), hold, -1):
                    if text.endswith(s[:n]):
                        hold = n
                        break
            text = text[: len(text) - hold]
        return text.rstrip()

    def feed(self, piece: str, final: bool = False) -> str:
        if self.stopped:
            return ""
        self.raw += piece
        visible = self._visible(final)
        out = visible[self.sent:] if len(visible) > self.sent else ""
        self.sent = max(self.sent, len(visible))
        return out

    @property
    def text(self) -> str:
        return self._visible(True)


# ---- the chat model -------------------------------------------------------------------------------
class ChatD2LMemory(BaseChatModel):
    """A chat model whose per-user long-term memory lives in LoRA adapters (d2l-memory).

    Setup:
        `pip install d2l-memory`; the default checkpoint and base model (SmolLM2-135M-Instruct) load on first
        use when no `memory` is given.

    Key init args:
        memory: a `d2l_memory.memory.Memory`; None builds `Memory.from_defaults(checkpoint=model, db_url=db_url)`
            lazily on first use.
        model (alias model_name): the checkpoint name, loaded when no memory is given and reported as
            `model_name`; with your own memory it is only a label.
        user_id: default user; a call's `config["configurable"]["user_id"]` or `user_id=` keyword overrides it.
        temperature, max_tokens, stop, timeout: generation settings (timeout bounds generation time, seconds).
        k: how many memories to recall per call (None: the memory's default).
        context_tokens, use_adapters: also put the recalled memories' text into the prompt (a token budget),
            or leave the adapters out (plain RAG); None: the memory's `MemoryConfig`.
        memorize: feed each exchange (latest user message + answer) to the user's conversation memory.
        streaming: stream through callbacks when invoked.
        max_retries, api_key: accepted for compatibility, unused (generation is local).

    Invoke:
        chat.invoke("Where do I live?", config={"configurable": {"user_id": "alice"}})

    Stream:
        for chunk in chat.stream("Hi", config={"configurable": {"user_id": "alice"}}): print(chunk.text, end="")

    Response metadata:
        {"model_name", "model_provider", "finish_reason", "user_id", "memories": [{"id", "score"}, ...],
        "in_prompt": [ids of memories whose text was in the prompt]}
        and `memorized` (ids of memories written by this call's exchange, if any) when memorize=True.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    memory: Any = Field(default=None, exclude=True)
    """The d2l_memory Memory; None: `Memory.from_defaults(checkpoint=model, db_url=db_url)` on first use."""
    model: str = Field(default="smollm2-135m", alias="model_name")
    """Checkpoint name: reported as `model_name`, and loaded when no memory is given."""
    db_url: str | None = None
    """Store URL for the lazily built default memory (None: the store's default)."""
    user_id: str | None = None
    """Default user when a call names none."""
    temperature: float | None = None
    """Sampling temperature (0: greedy); None: the memory's `MemoryConfig.temperature`."""
    max_tokens: int | None = None
    """Most tokens generated per answer; None: the memory's `MemoryConfig.max_new_tokens`."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    timeout: float | None = None
    """Upper bound on generation time in seconds (passed to generation as `max_time`)."""
    max_retries: int | None = None
    """Accepted for compatibility with the standard parameters; local generation does not retry."""
    api_key: SecretStr | None = Field(default=None, exclude=True)
    """Accepted for compatibility with the standard parameters; unused."""
    streaming: bool = False
    k: int | None = None
    """Memories recalled per call (None: the memory's default)."""
    context_tokens: int | None = None
    """Recalled memories' text put into the prompt, up to this many tokens (None: `MemoryConfig.context_tokens`)."""
    use_adapters: bool | None = None
    """Apply the recalled memories' adapter (False with a context budget: plain RAG; None: the memory's config)."""
    memorize: bool = False
    """Feed each exchange to the user's conversation memory."""
    every_n_turns: int = 4
    """With memorize: turns buffered before the conversation memory internalizes them."""
    keep_recent: int = 2
    """With memorize: the newest turns are internalized only once they are older than the last `keep_recent`."""
    cache: Any = Field(default=False, exclude=True)
    """Response caching is off by default: answers depend on memories that change between calls."""

    _memory_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _conversations: dict[str, Any] = PrivateAttr(default_factory=dict)
    _turn_locks: dict[str, threading.Lock] = PrivateAttr(default_factory=dict)

    # ---- langchain plumbing ---------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "d2l-memory-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model, "user_id": self.user_id, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "stop": self.stop, "k": self.k, "memorize": self.memorize}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider=PROVIDER, ls_model_type="chat",
                                 ls_model_name=kwargs.get("model") or self.model,
                                 ls_temperature=kwargs.get("temperature", self.temperature))
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop := (stop if stop is not None else self.stop):
            params["ls_stop"] = list(stop)
        return params

    # The user of a call comes from its config; langchain hands `_generate` only kwargs, so the public
    # entry points move `configurable.user_id` into the call's kwargs (then also part of the cache key
    # and the traced invocation params). batch/abatch/transform and LCEL go through these.
    @staticmethod
    def _with_user(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        if kwargs.get("user_id") is None:
            uid = (ensure_config(config).get("configurable") or {}).get("user_id")
            if uid is not None:
                kwargs = {**kwargs, "user_id": uid}
        return kwargs

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        return super().invoke(input, config, stop=stop, **self._with_user(config, kwargs))

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        return await super().ainvoke(input, config, stop=stop, **self._with_user(config, kwargs))

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        return super().stream(input, config, stop=stop, **self._with_user(config, kwargs))

    def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        return super().astream(input, config, stop=stop, **self._with_user(config, kwargs))

    def stream_events(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      version: str = "v2", stop: list[str] | None = None, **kwargs: Any) -> Any:
        return super().stream_events(input, config, version=version, stop=stop,
                                     **self._with_user(config, kwargs))

    def astream_events(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                       version: str = "v2", stop: list[str] | None = None, **kwargs: Any) -> Any:
        return super().astream_events(input, config, version=version, stop=stop,
                                      **self._with_user(config, kwargs))


    # ---- memory ---------------------------------------------------------------------------------
    def get_memory(self) -> Any:
        """The Memory in use, building the default one on first use when none was given."""
        if self.memory is None:
            with self._memory_lock:
                if self.memory is None:
                    from d2l_memory.memory import Memory

                    log.info("ChatD2LMemory: building Memory.from_defaults(checkpoint=%r)", self.model)
                    self.memory = Memory.from_defaults(checkpoint=self.model, db_url=self.db_url)
        return self.memory

    def conversation(self, user_id: str) -> Any:
        """The user's conversation memory that memorize=True feeds (one per user and chat model)."""
        with self._memory_lock:
            conv = self._conversations.get(user_id)
            if conv is None:
                conv = self.get_memory().conversation(user_id, every_n_turns=self.every_n_turns,
                                                      keep_recent=self.keep_recent)
                self._conversations[user_id] = conv
                self._turn_locks[user_id] = threading.Lock()
            return conv

    def flush(self, user_id: str | None = None) -> list[str]:
        """Internalize the memorized turns still pending (one user's, or everyone's); returns new memory ids."""
        with self._memory_lock:
            convs = [(u, c) for u, c in self._conversations.items() if user_id is None or u == user_id]
        ids: list[str] = []
        for u, conv in convs:
            with self._turn_locks[u]:
                ids.extend(conv.flush())
        return ids

    # ---- one call -------------------------------------------------------------------------------
    def _resolve(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]) -> _Call:
        user_id = kwargs.pop("user_id", None)
        if user_id is None:  # below a runnable that did not come through invoke/stream (e.g. generate())
            user_id = (ensure_config().get("configurable") or {}).get("user_id")
        if user_id is None:
            user_id = self.user_id
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError("ChatD2LMemory needs a user: pass config={'configurable': {'user_id': ...}}, "
                             f"user_id=... to the call, or ChatD2LMemory(user_id=...); got {user_id!r}")
        model = kwargs.pop("model", None) or kwargs.pop("model_name", None)
        if model is not None and model != self.model:
            raise ValueError(f"this ChatD2LMemory serves {self.model!r}; build another one for {model!r}")
        temperature = kwargs.pop("temperature", self.temperature)
        max_tokens = kwargs.pop("max_tokens", self.max_tokens)
        timeout = kwargs.pop("timeout", self.timeout)
        k = kwargs.pop("k", self.k)
        context_tokens = kwargs.pop("context_tokens", self.context_tokens)
        use_adapters = kwargs.pop("use_adapters", self.use_adapters)
        memorize = bool(kwargs.pop("memorize", self.memorize))
        stops = [s for s in (stop if stop is not None else (self.stop or [])) if s]
        for ignored in ("stream", "api_key", "max_retries", "ls_structured_output_format",
                        "structured_output_format"):
            kwargs.pop(ignored, None)
        if kwargs.get("tools") or kwargs.get("functions") or kwargs.get("tool_choice"):
            raise NotImplementedError("ChatD2LMemory does not offer tool calling; use a text protocol instead")
        if kwargs:
            log.debug("ChatD2LMemory ignores call keywords %s", sorted(kwargs))
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < 1):
            raise ValueError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        gen: dict[str, Any] = {"max_new_tokens": max_tokens, "temperature": temperature,
                               "min_new_tokens": 1}  # never an immediate end of sequence, so never empty
        if stops:
            gen["stop"] = stops
        if timeout:
            gen["max_time"] = float(timeout)
        if k is not None:
            gen["k"] = k
        if context_tokens is not None:
            gen["context_tokens"] = context_tokens
        if use_adapters is not None:
            gen["use_adapters"] = use_adapters
        chat = to_chat_messages(messages)
        return _Call(user_id=user_id, chat=chat, query=latest_user_text(chat), gen=gen, stop=stops,
                     memorize=memorize, model_name=self.model)

    def _metadata(self, call: _Call, answer: Any, text: str, stopped: bool) -> tuple[dict, UsageMetadata]:
        """Memorize the exchange (memorize=True); response and usage metadata of the call."""
        meta: dict[str, Any] = {
            "model_name": call.model_name, "model_provider": PROVIDER,
            "finish_reason": "stop" if stopped else answer.finish_reason, "user_id": call.user_id,
            "memories": [{"id": m.id, "score": round(float(m.score), 6), "weight": round(float(m.weight), 6)}
                         for m in answer.memories],
            "in_prompt": list(answer.in_prompt),
        }
        if call.memorize:
            meta["memorized"] = self._memorize(call, text)
        usage = UsageMetadata(input_tokens=int(answer.prompt_tokens), output_tokens=int(answer.completion_tokens),
                              total_tokens=int(answer.prompt_tokens) + int(answer.completion_tokens))
        return meta, usage

    def _memorize(self, call: _Call, answer: str) -> list[str]:
        conv = self.conversation(call.user_id)
        with self._turn_locks[call.user_id]:  # keep each user turn next to its answer
            ids = list(conv.add("user", call.query))
            if answer.strip():
                ids += conv.add("assistant", answer)
        return ids

    # ---- sync -----------------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self.streaming and run_manager is not None:
            full: ChatGenerationChunk | None = None
            for chunk in self._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
                full = chunk if full is None else full + chunk
            return ChatResult(generations=[_to_generation(full)])
        call = self._resolve(messages, stop, dict(kwargs))
        answer = self.get_memory().generate(call.user_id, call.chat, **call.gen)
        text = _StreamText(call.stop)
        text.feed(answer.text, final=True)
        meta, usage = self._metadata(call, answer, text.text, text.stopped)
        msg = AIMessage(content=text.text, response_metadata=meta, usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=msg,
                                                      generation_info={"finish_reason": meta["finish_reason"]})])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        call = self._resolve(messages, stop, dict(kwargs))
        stream = self.get_memory().stream(call.user_id, call.chat, **call.gen)
        text = _StreamText(call.stop)
        try:
            for piece in stream:
                out = text.feed(piece)
                if out:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=out))
                    if run_manager is not None:
                        run_manager.on_llm_new_token(out, chunk=chunk)
                    yield chunk
                if text.stopped:
                    break
        finally:
            stream.close()  # stops the generation if the consumer left early, and joins its thread
        yield self._last_chunk(call, stream, text)

    def _last_chunk(self, call: _Call, stream: Any, text: _StreamText) -> ChatGenerationChunk:
        """The final chunk: the held-back tail of the text, usage and response metadata."""
        answer = stream.answer
        if answer is None:  # cancelled before the worker stored its answer; nothing else is known
            raise RuntimeError("generation ended without an answer")
        tail = text.feed("", final=True)
        meta, usage = self._metadata(call, answer, text.text, text.stopped)
        return ChatGenerationChunk(
            message=AIMessageChunk(content=tail, response_metadata=meta, usage_metadata=usage, chunk_position="last"),
            generation_info={"finish_reason": meta["finish_reason"]})

    # ---- async: the model runs in worker threads, the event loop stays free --------------------
    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self.streaming and run_manager is not None:
            full: ChatGenerationChunk | None = None
            async for chunk in self._astream(messages, stop=stop, run_manager=run_manager, **kwargs):
                full = chunk if full is None else full + chunk
            return ChatResult(generations=[_to_generation(full)])
        return await asyncio.to_thread(self._generate, messages, stop, None, **kwargs)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        call = await asyncio.to_thread(self._resolve, messages, stop, dict(kwargs))
        stream = await asyncio.to_thread(self.get_memory().stream, call.user_id, call.chat, **call.gen)
        text = _StreamText(call.stop)
        try:
            async for piece in iterate_in_thread(stream):
                out = text.feed(piece)
                if out:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=out))
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(out, chunk=chunk)
                    yield chunk
                if text.stopped:
                    break
        finally:
            await asyncio.to_thread(stream.close)
        yield await asyncio.to_thread(self._last_chunk, call, stream, text)


def _to_generation(full: ChatGenerationChunk | None) -> ChatGeneration:
    if full is None:
        raise RuntimeError("the stream produced no chunks")
    m = full.message
    msg = AIMessage(content=m.content, response_metadata=m.response_metadata, usage_metadata=m.usage_metadata,
                    id=m.id)
    return ChatGeneration(message=msg, generation_info=full.generation_info)


__all__ = ["ChatD2LMemory", "latest_user_text", "to_chat_messages"]
