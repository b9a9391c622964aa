"""Engine tests on tiny random models of several architectures (CPU, fp32, seconds)."""

import json

import pytest
import torch
from tiny import ARCHS, make_loud, tiny_d2l, tiny_model

from d2l_memory.adapter import Adapter
from d2l_memory.engine import D2L
from d2l_memory.errors import AdapterError, CheckpointError, InputError, ModelNotFoundError
from d2l_memory.lora import apply_lora

DOC = "Alice lives in Lisbon. The special magic number is 4821. The grass is green."


def _randomize(d2l, seed=1):
    return make_loud(d2l, seed)


def _logits(d2l, ids, adapters=None):
    with d2l.lora_context(adapters or [None] * ids.shape[0]):
        return d2l.model(input_ids=ids).logits


@pytest.mark.parametrize("arch", ARCHS)
def test_fresh_hypernet_is_identity(arch):
    d2l = tiny_d2l(arch)
    ad = d2l.internalize(DOC)
    ids = torch.tensor([d2l.prompt_ids("Where does Alice live?")])
    base = d2l.model(input_ids=ids).logits
    assert torch.equal(_logits(d2l, ids, [ad]), base)


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_per_sample_lora_equals_rows_alone(arch):
    d2l = tiny_d2l(arch)
    _randomize(d2l)
    ads = d2l.internalize([DOC, "Bob has a cat named Tom. " * 20])  # different ranks (1 vs 2+ chunks)
    assert ads[0].rank != ads[1].rank
    rows = [d2l.prompt_ids("Where does Alice live?"), d2l.prompt_ids("Name the cat?")]
    T = min(len(r) for r in rows)
    ids = torch.tensor([r[:T] for r in rows])
    batched = _logits(d2l, ids, [ads[0], ads[1]])
    for i, ad in enumerate(ads):
        alone = _logits(d2l, ids[i:i + 1], [ad])
        torch.testing.assert_close(batched[i:i + 1], alone, atol=1e-5, rtol=1e-5)
    # a row without adapter in a mixed batch is the base model (up to batched-matmul rounding)
    mixed = _logits(d2l, ids, [ads[0], None])
    torch.testing.assert_close(mixed[1], d2l.model(input_ids=ids).logits[1], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(batched[0], d2l.model(input_ids=ids[0:1]).logits[0])


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_kv_cached_generation_equals_uncached_forward(arch):
    d2l = tiny_d2l(arch)
    _randomize(d2l)
    ad = d2l.internalize(DOC)
    ids = torch.tensor([d2l.prompt_ids("Where?")])
    with d2l.lora_context([ad]):
        out = d2l.model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True, pad_token_id=d2l.tokenizer.pad_token_id)
        full = d2l.model(input_ids=out.sequences).logits  # one uncached forward over prompt + generation
    for step, score in enumerate(out.scores):
        torch.testing.assert_close(score[0], full[0, ids.shape[1] - 1 + step], atol=1e-4, rtol=1e-4)


def test_rank_concat_equals_sum_of_deltas():
    d2l = tiny_d2l()
    _randomize(d2l)
    ads = d2l.internalize([DOC, "Bob likes tea.", "Carol drives a red car."])
    w = [0.5, 1.0, 2.0]
    cat = Adapter.concat(ads, w)
    assert cat.rank == sum(a.rank for a in ads)
    for layer in range(cat.num_layers):
        want = sum(wi * a.delta_weight("down_proj", layer) for wi, a in zip(w, ads, strict=True))
        torch.testing.assert_close(cat.delta_weight("down_proj", layer), want, atol=1e-5, rtol=1e-4)
    # and the model with the concatenated adapter equals the model with W + sum of deltas
    ids = torch.tensor([d2l.prompt_ids("hi")])
    lin = dict(d2l.model.named_modules())[d2l.module_paths["down_proj"][0]]
    with torch.no_grad():
        saved = [dict(d2l.model.named_modules())[p].weight.clone() for p in d2l.module_paths["down_proj"]]
        for layer, p in enumerate(d2l.module_paths["down_proj"]):
            dict(d2l.model.named_modules())[p].weight += cat.delta_weight("down_proj", layer)
        merged = d2l.model(input_ids=ids).logits
        for p, wgt in zip(d2l.module_paths["down_proj"], saved, strict=True):
            dict(d2l.model.named_modules())[p].weight.copy_(wgt)
    assert lin.weight.shape[0] > 0
    torch.testing.assert_close(_logits(d2l, ids, [cat]), merged, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_peft_export_matches_functional_path(arch, tmp_path):
    from peft import PeftModel

    d2l = tiny_d2l(arch, targets=("down_proj", "q_proj"))
    _randomize(d2l)
    ad = d2l.internalize(DOC)
    ad.save_peft(tmp_path / "peft")
    ids = torch.tensor([d2l.prompt_ids("Where does Alice live?")])
    ours = _logits(d2l, ids, [ad])
    fresh, _ = tiny_model(arch)
    peft_model = PeftModel.from_pretrained(fresh, str(tmp_path / "peft")).eval()
    theirs = peft_model(input_ids=ids).logits
    assert (ours - theirs).abs().max().item() < 1e-4
    back = Adapter.load_peft(tmp_path / "peft")
    assert back.rank == ad.rank and back.targets == sorted(ad.targets) or set(back.targets) == set(ad.targets)
    torch.testing.assert_close(_logits(d2l, ids, [back]), ours, atol=1e-5, rtol=1e-5)
    cfg = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert cfg["r"] == ad.rank and cfg["lora_alpha"] == pytest.approx(ad.alpha * ad.rank)


def test_gradients_reach_every_hypernet_parameter_and_base_is_frozen():
    d2l = tiny_d2l()
    base_before = {k: v.clone() for k, v in d2l.model.state_dict().items()}
    opt = torch.optim.SGD(d2l.hypernet.parameters(), lr=0.1)
    ids = torch.tensor([d2l.prompt_ids("Where does Alice live?")])
    chunks = [d2l.doc_chunks(DOC, n_chunks=2)]
    for _ in range(2):  # step 1 moves the head's B half off zero; step 2's gradients then reach everything
        opt.zero_grad()
        A, B = d2l.doc_loras(chunks)
        with apply_lora(d2l.model, d2l.module_paths, {t: A[0][t][None] for t in A[0]},
                        {t: B[0][t][None] for t in B[0]}, d2l.config.alpha):
            loss = d2l.model(input_ids=ids).logits.float().pow(2).mean()
        loss.backward()
        opt.step()
    for name, p in d2l.hypernet.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in d2l.model.parameters())
    for k, v in d2l.model.state_dict().items():
        assert torch.equal(v, base_before[k]), k


def test_checkpoint_round_trip_exact_and_errors(tmp_path):
    d2l = tiny_d2l()
    _randomize(d2l)
    d2l.save_pretrained(tmp_path / "ck", dtype=torch.float32)
    back = D2L.from_pretrained(tmp_path / "ck", model=d2l.model, tokenizer=d2l.tokenizer, autocast=False)
    for (k, v), (k2, v2) in zip(d2l.hypernet.state_dict().items(), back.hypernet.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    a1, a2 = d2l.internalize(DOC), back.internalize(DOC)
    assert torch.equal(a1.A["down_proj"], a2.A["down_proj"])
    # mismatched base model
    other, tok = tiny_model("qwen2")
    other.config.num_hidden_layers = 3
    with pytest.raises(CheckpointError, match="differs"):
        D2L.from_pretrained(tmp_path / "ck", model=other, tokenizer=tok)
    # truncated shard
    shard = next((tmp_path / "ck").glob("hypernet-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        D2L.from_pretrained(tmp_path / "ck", model=d2l.model, tokenizer=d2l.tokenizer)
    with pytest.raises(CheckpointError, match="no hypernetwork checkpoint"):
        D2L.from_pretrained(tmp_path / "nowhere", model=d2l.model, tokenizer=d2l.tokenizer)


def test_bad_inputs_raise_clear_errors(tmp_path):
    d2l = tiny_d2l()
    with pytest.raises(InputError, match="empty"):
        d2l.internalize("   ")
    with pytest.raises(InputError, match="UTF-8"):
        d2l.internalize(b"\xff\xfe\x00bad")
    with pytest.raises(InputError):
        d2l.internalize(42)
    with pytest.raises(AdapterError, match="unknown target module 'nope_proj'"):
        tiny_d2l(targets=("nope_proj",))
    with pytest.raises(ModelNotFoundError):
        D2L.from_base_model(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelNotFoundError):
        D2L.from_base_model("no-such-org/no-such-model-xyz")
    with pytest.raises(AdapterError):
        Adapter.from_bytes(b"garbage")


def test_adapter_bytes_round_trip_is_bit_identical():
    d2l = tiny_d2l()
    _randomize(d2l)
    ad = d2l.internalize(DOC)
    back = Adapter.from_bytes(ad.to_bytes())
    assert back.alpha == ad.alpha and back.module_paths == ad.module_paths
    assert all(torch.equal(back.A[t], ad.A[t]) and torch.equal(back.B[t], ad.B[t]) for t in ad.targets)


def test_scaled_adapter_scales_the_delta_and_evaluation_applies_it():
    from d2l_memory.data.types import QA, Sample
    from d2l_memory.evaluation import evaluate

    d2l = tiny_d2l()
    _randomize(d2l)
    ad = d2l.internalize(DOC)
    half = ad.scaled(0.5)
    assert half.alpha == ad.alpha * 0.5 and ad.alpha == d2l.internalize(DOC).alpha  # the original keeps its strength
    assert half.A is not ad.A and half.A["down_proj"] is ad.A["down_proj"]  # no tensor copies
    torch.testing.assert_close(half.delta_weight("down_proj", 0), 0.5 * ad.delta_weight("down_proj", 0))
    for bad in (0, -1.0, float("inf"), float("nan"), True, "2"):
        with pytest.raises(AdapterError, match="scale factor"):
            ad.scaled(bad)
    # evaluate(adapter_scale=s) answers with the generated adapters at strength s
    sample = Sample(context=DOC, qas=(QA("Where does Alice live?", "Lisbon"),), kind="personal", id="s0")
    got = evaluate(d2l, [sample], conditions=["d2l"], max_new_tokens=4, adapter_scale=0.2)["d2l"]
    want = d2l.generate(["Where does Alice live?"], adapters=[ad.scaled(0.2)], max_new_tokens=4)
    plain = d2l.generate(["Where does Alice live?"], adapters=[ad], max_new_tokens=4)
    assert got["examples"][0]["pred"] == want[0] != plain[0]


def test_svd_truncation_keeps_delta_when_rank_suffices():
    d2l = tiny_d2l()
    _randomize(d2l)
    ads = d2l.internalize([DOC, "Bob likes tea."])
    cat = Adapter.concat(ads)
    small, kept = cat.truncate(cat.rank)
    assert kept == pytest.approx(1.0)
    for layer in range(cat.num_layers):
        torch.testing.assert_close(small.delta_weight("down_proj", layer), cat.delta_weight("down_proj", layer),
                                   atol=2e-4, rtol=1e-3)
    tiny_rank, kept2 = cat.truncate(2)
    assert tiny_rank.rank == 2 and 0 < kept2 < 1


def test_long_documents_are_chunked_evenly_with_template_affixes():
    d2l = tiny_d2l()
    ids = d2l.encoder.tokenize("word " * 300)
    chunks = d2l.doc_chunks("word " * 300, chunk_tokens=64)
    pre, suf = d2l.encoder.affixes.prefix, d2l.encoder.affixes.suffix
    assert len(chunks) == -(-len(ids) // 64)
    assert all(tuple(c[: len(pre)]) == pre and tuple(c[-len(suf):]) == suf for c in chunks)
    sizes = [len(c) - len(pre) - len(suf) for c in chunks]
    assert max(sizes) - min(sizes) <= len(chunks)  # even split
    assert sum(sizes) == len(ids)
    text = d2l.tokenizer.decode(list(pre) + [0] + list(suf))
    assert "<|im_start|>user" in text and "<|im_start|>assistant" in text


def test_checkpoint_shards_respect_the_size_limit_and_split_big_tensors(tmp_path):
    from d2l_memory import checkpoint as ck

    d2l = tiny_d2l()
    state = d2l.hypernet.state_dict()
    limit = 16384  # the tiny head is 24 KB: it must be cut in two
    ck.save_checkpoint(tmp_path, state, {"note": "x"}, max_shard_bytes=limit)
    cfg = ck.read_config(tmp_path)
    assert cfg["split_tensors"]  # some tensors are larger than one shard
    assert all(f.stat().st_size <= limit + 2048 for f in tmp_path.glob("hypernet-*.safetensors"))  # + header
    back = ck.load_state(tmp_path, cfg)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_latent_centering_tracks_documents_in_training_only():
    """The running latent mean is set by calibration, moves with training batches, and is frozen at
    inference; checkpoint configs written before the field existed load with centering off."""
    from d2l_memory.config import HypernetConfig

    d2l = tiny_d2l()
    hn = d2l.hypernet
    assert torch.count_nonzero(hn.latent_mean) == 0
    d2l.calibrate([DOC, "The sky is blue. Bob works in Porto.", "The special magic number is 1234."])
    calibrated = hn.latent_mean.clone()
    assert torch.count_nonzero(calibrated) > 0
    feats, mask = d2l.encoder.activations(d2l.doc_chunks("Alice lives in Lisbon."))
    hn.eval()
    d2l.internalize(DOC)
    assert torch.equal(hn.latent_mean, calibrated)  # inference leaves it alone
    hn.train()
    hn(feats, mask)
    z = hn.latents(feats, mask).float().mean(0)
    expected = calibrated + hn.cfg.latent_momentum * (z - calibrated)
    assert torch.allclose(hn.latent_mean, expected, atol=1e-5)
    hn.eval()
    old = {k: v for k, v in hn.cfg.to_dict().items() if k not in ("center_latents", "latent_momentum")}
    assert HypernetConfig.from_dict(old).center_latents is False
    with pytest.raises(Exception, match="latent_momentum"):
        HypernetConfig.from_dict({**hn.cfg.to_dict(), "latent_momentum": 0.0})


def test_copy_values_path_starts_at_zero_reads_the_document_and_round_trips(tmp_path):
    """`copy_values` adds to B an attention read of the document's token embeddings, scaled by a gain that
    starts at 0 (delta W = 0 at init); once the gain is on, B depends on which tokens the document has."""
    d2l = tiny_d2l(copy_values=True)
    hn = d2l.hypernet
    assert hn.copy_targets == ["down_proj"]
    docs = [DOC, "The sky is blue. Bob works in Porto."]
    d2l.calibrate(docs)
    feats, mask = d2l.encoder.activations(d2l.doc_chunks(docs[0])[:1] + d2l.doc_chunks(docs[1])[:1])
    assert torch.count_nonzero(hn(feats, mask)[1]["down_proj"]) == 0
    with torch.no_grad():
        hn.copy_gain["down_proj"].fill_(1.0)
    B = hn(feats, mask)[1]["down_proj"]  # [2, L, r, D]: only the copy path is non-zero
    emb = d2l.model.get_input_embeddings().weight
    spans = []
    for i in range(2):  # each read lies in the span of the document's own token embeddings
        ids = torch.tensor(d2l.doc_chunks(docs[i])[0])[mask[i, : len(d2l.doc_chunks(docs[i])[0])]]
        e = emb[ids].double()  # [T_doc, D]
        spans.append(e.T @ torch.linalg.pinv(e.T))  # projector onto that span [D, D]
    for i in range(2):
        b = B[i, 0].double().T  # [D, r]
        torch.testing.assert_close(spans[i] @ b, b, atol=1e-4, rtol=1e-4)
        assert (spans[1 - i] @ b - b).norm() > 0.1 * b.norm()  # not in the other document's span
    hn.eval()
    want = d2l.internalize(docs[0])
    back = D2L.from_pretrained(d2l.save_pretrained(tmp_path / "ckpt", dtype=torch.float32), model=d2l.model,
                               tokenizer=d2l.tokenizer, autocast=False)
    assert back.config.copy_values is True
    torch.testing.assert_close(back.internalize(docs[0]).B["down_proj"], want.B["down_proj"])


def test_copy_keys_path_keys_each_read_on_the_preceding_input(tmp_path):
    """`copy_keys` adds to A the copy read's weights applied to the target module's inputs one token
    earlier, each input normalised to unit RMS; it starts at 0, needs copy_values, and round-trips."""
    from d2l_memory.config import HypernetConfig

    with pytest.raises(Exception, match="copy_keys"):
        HypernetConfig.from_dict({**tiny_d2l().config.to_dict(), "copy_keys": True})  # without copy_values
    d2l = tiny_d2l(copy_values=True, copy_keys=True)
    hn = d2l.hypernet
    d2l.calibrate([DOC, "The sky is blue. Bob works in Porto."])
    feats, mask, inputs = d2l.encode(d2l.doc_chunks(DOC)[:1])
    assert inputs["down_proj"].shape == (*feats.shape[:3], d2l.config.feature_sizes["down_proj"][0])
    with pytest.raises(ValueError, match="copy_keys"):
        hn(feats, mask)  # the inputs are required
    A0 = hn(feats, mask, inputs)[0]["down_proj"]
    with torch.no_grad():
        hn.copy_key_gain["down_proj"].fill_(1.0)
    A1 = hn(feats, mask, inputs)[0]["down_proj"]
    z = hn.latents(feats, mask).float()
    if hn.cfg.center_latents:
        z = z - hn.latent_mean
    z = torch.nn.functional.normalize(z, dim=-1)
    keys = hn.copy_k(hn.standardise(feats))
    w = hn.copy_weights(z, keys, mask)  # [1, L, r, T]
    x = inputs["down_proj"].double()
    unit = x / x.pow(2).mean(-1, keepdim=True).sqrt()
    T = x.shape[2]
    want = sum(w[..., t, None].double() * unit[:, :, None, t - 1] for t in range(1, T))  # [1, L, r, d_in]
    torch.testing.assert_close((A1 - A0).double(), want, atol=1e-4 * want.abs().max().item(), rtol=1e-3)
    assert (A1 - A0).norm() > 0.1 * A0.norm()
    hn.eval()
    want_ad = d2l.internalize(DOC)
    back = D2L.from_pretrained(d2l.save_pretrained(tmp_path / "ckpt", dtype=torch.float32), model=d2l.model,
                               tokenizer=d2l.tokenizer, autocast=False)
    assert back.config.copy_keys is True
    torch.testing.assert_close(back.internalize(DOC).A["down_proj"], want_ad.A["down_proj"])


def test_bf16_base_model_with_fp32_hypernet_without_autocast():
    """A bf16 base model (the CUDA default) feeds bf16 features to the fp32 hypernetwork; with autocast off
    the hypernetwork casts them instead of failing on a dtype mismatch (seen on an H200 before the fix)."""
    d2l = tiny_d2l(copy_values=True, copy_keys=True)
    make_loud(d2l)
    ref = d2l.internalize(DOC)
    d2l.model.to(torch.bfloat16)
    assert not d2l.use_autocast
    ad = d2l.internalize(DOC)
    for t in ref.A:
        assert ad.A[t].dtype == torch.float32 and torch.isfinite(ad.A[t]).all()
        torch.testing.assert_close(ad.A[t], ref.A[t], atol=0.05, rtol=0.05)


def test_perceiver_groups_chunks_by_length_with_the_same_adapters_as_each_chunk_alone():
    """Chunks of very different lengths go through the Perceiver in length groups, each cut to its own token
    window; every chunk's adapter is the one it gets alone (copy and key paths on)."""
    from d2l_memory.hypernet import length_groups

    d2l = tiny_d2l(copy_values=True, copy_keys=True)
    _randomize(d2l)
    for t in d2l.hypernet.copy_gain:
        d2l.hypernet.copy_gain[t].data.fill_(0.5)
        d2l.hypernet.copy_key_gain[t].data.fill_(0.5)
    d2l.hypernet.eval()
    # several groups; then one group whose longest chunk is not the first (perceived in another order)
    for texts, n_groups in ((["Alice lives in Lisbon.", DOC * 6, "The sky is blue. " * 3, DOC * 2], 3),
                            ([DOC, DOC + " Yes."], 1)):
        chunks = [d2l.doc_chunks(t)[0] for t in texts]
        enc = d2l.encode(chunks)
        groups = length_groups(enc[1])
        assert len(groups) == n_groups and sorted(i for g, _, _ in groups for i in g.tolist()) == [*range(len(texts))]
        assert groups[0][0][0] != 0  # the longest chunk is perceived first
        for g, start, end in groups:  # each window holds all of its chunks' document tokens
            assert not enc[1][g][:, :start].any() and not enc[1][g][:, end:].any()
        with torch.no_grad():
            A, B = d2l.hypernet(*enc)
            for i, c in enumerate(chunks):
                a, b = d2l.hypernet(*d2l.encode([c]))
                for t in A:
                    torch.testing.assert_close(A[t][i], a[t][0], atol=1e-5, rtol=1e-4)
                    torch.testing.assert_close(B[t][i], b[t][0], atol=1e-5, rtol=1e-4)


def test_pad_rank_stacks_padded_rows_with_gradients_and_refuses_a_too_small_rank():
    from d2l_memory.lora import pad_rank

    rows = [torch.randn(3, r, 5, requires_grad=True) for r in (2, 4, 1)]
    out = pad_rank(rows, 4)
    assert out.shape == (3, 3, 4, 5)
    for i, r in enumerate(rows):
        assert torch.equal(out[i, :, : r.shape[1]], r) and not out[i, :, r.shape[1]:].any()
    (out * torch.arange(4.0)[:, None]).sum().backward()
    for r in rows:
        assert torch.equal(r.grad, torch.arange(float(r.shape[1]))[None, :, None].expand_as(r))
    assert pad_rank([torch.ones(1, 1, 2, dtype=torch.bfloat16), torch.ones(1, 2, 2)], 2).dtype == torch.bfloat16
    with pytest.raises(AdapterError, match="rank 3 is below"):
        pad_rank(rows, 3)
