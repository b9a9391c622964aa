"""benchmarks/latent_similarity.py: how alike the head's inputs are across documents."""

import pytest
import torch
from benchscripts import load_benchmark
from tiny import make_loud, tiny_d2l


def test_mean_pairwise_cosine_of_known_vectors():
    ls = load_benchmark("latent_similarity")
    same = torch.ones(3, 2, 1, 4) / 2  # three identical unit vectors per layer/slot
    assert ls.mean_pairwise_cosine(same) == pytest.approx(1.0)
    ortho = torch.eye(4)[:3].reshape(3, 1, 1, 4)
    assert ls.mean_pairwise_cosine(ortho) == pytest.approx(0.0)


def test_latent_stats_centring_on_the_documents_own_mean_decorrelates_them():
    ls = load_benchmark("latent_similarity")
    d2l = tiny_d2l()
    make_loud(d2l)
    d2l.hypernet.latent_mean.fill_(5.0)  # a far-off running mean: every head input points the same way
    docs = ["Alice lives in Lisbon.", "The special magic number is 1234.", "The grass is green and the sky is blue."]
    out = ls.latent_stats(d2l, docs)
    assert out["docs"] == 3 and out["doc_part_over_mean"] > 0
    assert out["cos_head_inputs"] > 0.9
    assert out["cos_own_centred"] < out["cos_head_inputs"]
    assert out["cos_own_centred"] < 0  # centred on their own mean, three documents point apart
    assert out["offset_over_doc_part"] > 1  # the running mean is far from all three
