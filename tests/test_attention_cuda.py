"""xformers memory-efficient attention (CUDA only) must match the SDPA path."""

import pytest
import torch

from d2l_memory.config import HypernetConfig
from d2l_memory.hypernet import CrossAttention, _xfmha

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available() or _xfmha is None,
                                reason="xformers attention runs on CUDA only (pip install 'd2l-memory[gpu]')")


def _cfg(impl):
    return HypernetConfig(num_layers=2, hidden_size=32, feature_sizes={"down_proj": (48, 32)}, latent_size=64,
                          num_heads=8, num_kv_heads=2, attn_impl=impl)


def test_sdpa_cross_attention_ignores_padding():
    torch.manual_seed(0)
    attn = CrossAttention(_cfg("sdpa"))
    q, ctx = torch.randn(3, 4, 64), torch.randn(3, 10, 64)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 6:] = False
    out = attn(q, ctx, mask)
    alone = attn(q[1:2], ctx[1:2, :6], None)
    torch.testing.assert_close(out[1:2], alone, atol=1e-5, rtol=1e-5)


@needs_cuda
def test_xformers_matches_sdpa_on_packed_chunks():
    torch.manual_seed(0)
    ref = CrossAttention(_cfg("sdpa")).cuda()
    fast = CrossAttention(_cfg("xformers")).cuda()
    fast.load_state_dict(ref.state_dict())
    q, ctx = torch.randn(5, 8, 64, device="cuda"), torch.randn(5, 40, 64, device="cuda")
    mask = torch.ones(5, 40, dtype=torch.bool, device="cuda")
    mask[0, 25:] = False
    mask[3, 7:] = False
    torch.testing.assert_close(fast(q, ctx, mask), ref(q, ctx, mask), atol=2e-3, rtol=2e-3)
