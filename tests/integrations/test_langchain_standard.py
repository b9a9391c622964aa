"""langchain-tests standard suites for ChatD2LMemory, offline on a tiny random model (plumbing only).

Unsupported features are declared through the suites' flags (never skipped by hand): no tool calling, no
structured output / JSON mode, text only (no image, audio, PDF or Anthropic-format inputs), no model
override per call (one instance serves one checkpoint).
"""

from __future__ import annotations

from typing import Any

from d2l_memory.integrations.langchain import ChatD2LMemory
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from lc_fixtures import MAX_TOKENS, shared_memory


class _Flags:
    @property
    def chat_model_class(self) -> type[ChatD2LMemory]:
        return ChatD2LMemory

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_tool_choice(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_image_urls(self) -> bool:
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        return False

    @property
    def supports_video_inputs(self) -> bool:
        return False

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False

    @property
    def supports_image_tool_message(self) -> bool:
        return False

    @property
    def supports_pdf_tool_message(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False


class TestChatD2LMemoryUnit(_Flags, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        # no memory: the unit suite only constructs the model, which must not load anything
        return {"model": "smollm2-135m", "user_id": "standard-user"}


class TestChatD2LMemoryIntegration(_Flags, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"memory": shared_memory(), "model": "tiny-llama", "user_id": "standard-user",
                "max_tokens": MAX_TOKENS}
