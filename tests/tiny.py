"""Tiny random-init models and a tiny byte-level tokenizer with a chat template: no download needed."""

from __future__ import annotations

import functools

import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ARCHS = ["llama", "qwen2", "qwen3", "gemma2", "mistral"]


@functools.lru_cache(maxsize=1)
def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = ["The special magic number is 1234. What is the capital of France? Alice lives in Lisbon.",
              "user assistant system The grass is green and the sky is blue."] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(arch: str = "llama", seed: int = 0, layers: int = 2):
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = tiny_tokenizer()
    kw = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=layers,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
              tie_word_embeddings=False)
    if arch in ("gemma2", "qwen3"):
        kw["head_dim"] = 8
    cfg = AutoConfig.for_model(arch, **kw)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    model.requires_grad_(False)
    return model, tok


TINY_HYPERNET = dict(latent_size=32, num_latents=4, num_blocks=2, num_heads=4, num_kv_heads=2, ff_mult=2,
                     layer_mlp_hidden=32, rank=4)  # HypernetConfig sizes for the tiny models


def tiny_d2l(arch: str = "llama", seed: int = 0, targets=("down_proj",), **overrides):
    from d2l_memory.config import EncoderConfig
    from d2l_memory.engine import D2L

    model, tok = tiny_model(arch, seed)
    kw = {**TINY_HYPERNET, **overrides}
    return D2L.from_base_model(f"tiny-{arch}", model=model, tokenizer=tok, target_modules=targets, seed=seed,
                               autocast=False, encoder_config=EncoderConfig(chunk_tokens=64, chunk_batch_size=4), **kw)


def make_loud(d2l, seed: int = 1, scale: float = 20.0):
    """Move an untrained hypernetwork off its exact-zero init (the head's B half and bias_B start at 0),
    so its adapters visibly change the model and tests can tell which adapter was applied."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t, (d_in, _) in d2l.config.feature_sizes.items():
            head = d2l.hypernet.head[t]
            head[..., d_in:].normal_(0, float(head[..., :d_in].std()), generator=g)
            head.mul_(scale)
            d2l.hypernet.scaler_B[t].copy_(torch.rand(d2l.hypernet.scaler_B[t].shape, generator=g) + 0.5)
            d2l.hypernet.bias_B[t].normal_(0, 0.05, generator=g)
    return d2l
