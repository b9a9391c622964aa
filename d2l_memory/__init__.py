"""d2l-memory: a memory layer for LLM apps built on Doc-to-LoRA."""
