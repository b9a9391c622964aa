"""Meta-training on tiny models: the loss falls, exact match rises, resume is exact, DDP runs on 2 CPUs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import tiny_d2l

from d2l_memory.data.types import QA, Sample
from d2l_memory.evaluation import evaluate
from d2l_memory.training.teacher import compute_targets, generate_targets, load_targets, save_targets
from d2l_memory.training.trainer import TrainConfig, Trainer

WORDS = ["green", "blue", "sky", "sun"]


def toy_niah():
    return [Sample(context=f"The grass is green. The special magic number is {w}. The sky is blue.",
                   qas=(QA("What is the special magic number?", w),), kind="niah", id=f"toy{i}")
            for i, w in enumerate(WORDS)]


def _trainer(tmp_path, steps=200, **kw):
    d2l = tiny_d2l(seed=0)
    samples = toy_niah()
    targets = compute_targets(d2l, samples, use_teacher=False)
    cfg = TrainConfig(out_dir=str(tmp_path), steps=steps, docs_per_step=4, qas_per_doc=1, lr=3e-3, warmup=5,
                      save_every=1000, log_every=1000, **kw)
    return d2l, samples, Trainer(d2l, samples, targets, cfg)


def test_training_lowers_loss_and_raises_exact_match(tmp_path):
    d2l, samples, tr = _trainer(tmp_path)
    fixed = tr.batch_for(0)
    with torch.no_grad():
        before = tr.loss_for(fixed)[1]["task"]
    em_before = evaluate(d2l, samples, conditions=["d2l"], max_new_tokens=3)["d2l"]["em"]
    tr.train()
    with torch.no_grad():
        after = tr.loss_for(fixed)[1]["task"]
    em_after = evaluate(d2l, samples, conditions=["d2l"], max_new_tokens=3)["d2l"]["em"]
    assert after < before - 0.2, (before, after)
    assert em_before <= 0.25 and em_after >= 0.75, (em_before, em_after)
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000


def test_resume_reproduces_uninterrupted_run(tmp_path):
    _, _, straight = _trainer(tmp_path / "a", steps=10)
    straight.train()
    _, _, first = _trainer(tmp_path / "b", steps=10, )
    first.cfg.save_every = 5
    first.train(until=5)
    _, _, resumed = _trainer(tmp_path / "b", steps=10)
    assert resumed.maybe_resume() and resumed.step == 5
    resumed.train()
    pairs = zip(straight.d2l.hypernet.state_dict().items(), resumed.d2l.hypernet.state_dict().items(), strict=True)
    for (k, a), (_, b) in pairs:
        assert torch.equal(a, b), k
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]


def test_teacher_targets_round_trip(tmp_path):
    d2l = tiny_d2l(seed=0)
    samples = toy_niah()[:2]
    gold = compute_targets(d2l, samples, k=4)
    gen = generate_targets(d2l, samples, k=4, max_new_tokens=4)  # tiny model rarely emits EOS: may be empty
    save_targets(gold, tmp_path / "t")
    back = load_targets(tmp_path / "t")
    assert back.keys() == gold.keys()
    for k, t in gold.items():
        assert back[k].answer_ids == t.answer_ids and torch.equal(back[k].topk_ids, t.topk_ids)
        assert t.topk_ids.shape == (len(t.answer_ids), 4)
    assert all(t.answer_ids[-1] == d2l.tokenizer.eos_token_id for t in gen.values())


def test_ddp_smoke_two_cpu_processes(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           str(Path(__file__).parent / "ddp_smoke.py"), str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert all(x["world"] == 2 for x in ranks)
    assert ranks[0]["first_doc"] != ranks[1]["first_doc"]  # each process sees its own documents
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-6)  # gradients were all-reduced
    assert all(all(torch.isfinite(torch.tensor(x["losses"]))) for x in ranks)


def test_contrast_term_adds_hinge_on_own_vs_swapped_gap_and_trains(tmp_path):
    """With the contrast term, each question is also scored with another document's adapter; the loss adds
    relu(margin - (swapped - own)). A short run widens the own-vs-swapped gap on the toy task."""
    _, _, plain = _trainer(tmp_path / "plain", steps=60)
    d2l, _, tr = _trainer(tmp_path / "c", steps=60, contrast_weight=1.0, contrast_margin=5.0)
    batch = tr.batch_for(0)
    with torch.no_grad():
        loss_c, info_c = tr.loss_for(batch)
        _, info_p = plain.loss_for(batch)
    assert "gap" not in info_p and info_c["task"] == pytest.approx(info_p["task"], rel=1e-5)
    assert info_c["contrast"] == pytest.approx(max(0.0, 5.0 - info_c["gap"]), abs=1e-4)
    assert loss_c.item() == pytest.approx(info_c["task"] + 0.1 * info_c["l1"] + info_c["contrast"], rel=1e-4)
    gap_before = info_c["gap"]
    tr.train()
    plain.train()
    plain.cfg.contrast_weight = 1.0  # only to measure its gap the same way
    with torch.no_grad():
        gap_after = tr.loss_for(batch)[1]["gap"]
        gap_plain = plain.loss_for(batch)[1]["gap"]
    assert gap_after > gap_before + 0.2 and gap_after > gap_plain, (gap_before, gap_after, gap_plain)
    with pytest.raises(Exception, match="docs_per_step"):
        TrainConfig(out_dir=str(tmp_path), docs_per_step=1, contrast_weight=1.0)


def test_gain_lr_mult_gives_the_copy_gains_their_own_lr(tmp_path):
    """`gain_lr_mult` puts the copy/key path gains in their own optimizer group at lr * mult."""
    d2l = tiny_d2l(seed=0, copy_values=True, copy_keys=True)
    samples = toy_niah()
    targets = compute_targets(d2l, samples, use_teacher=False)
    cfg = TrainConfig(out_dir=str(tmp_path), steps=5, docs_per_step=4, qas_per_doc=1, lr=1e-3, warmup=1,
                      save_every=1000, log_every=1000, gain_lr_mult=10.0)
    tr = Trainer(d2l, samples, targets, cfg)
    gain_ids = {id(p) for name, p in d2l.hypernet.named_parameters() if "gain" in name}
    groups = tr.opt.param_groups
    assert len(groups) == 3 and {id(p) for p in groups[2]["params"]} == gain_ids
    tr.train_step()
    tr.train_step()
    assert groups[2]["lr"] == pytest.approx(10 * groups[0]["lr"]) and groups[0]["lr"] > 0
    assert all(torch.count_nonzero(p) > 0 for p in groups[2]["params"])  # both gains left 0
    assert len(Trainer(d2l, samples, targets, TrainConfig(out_dir=str(tmp_path / "b"))).opt.param_groups) == 2
    with pytest.raises(Exception, match="gain_lr_mult"):
        TrainConfig(out_dir=str(tmp_path), gain_lr_mult=0)


def test_answer_losses_match_the_per_row_formula_on_mixed_targets():
    """One log-softmax over the batch's answer tokens gives each row the mean over its tokens of
    ce * CE(answer) + kl * CE(teacher top-k); rows without a teacher get the CE term alone."""
    import torch.nn.functional as F

    from d2l_memory.training.teacher import Target
    from d2l_memory.training.trainer import answer_losses

    g = torch.Generator().manual_seed(0)
    V = 11
    targets = [Target([1, 2, 3], None, None),
               Target([4, 5], torch.randint(0, V, (2, 4), generator=g, dtype=torch.int32),
                      torch.randn(2, 4, generator=g).log_softmax(-1).half()),
               Target([6], torch.randint(0, V, (1, 2), generator=g, dtype=torch.int32),
                      torch.randn(1, 2, generator=g).log_softmax(-1).half())]
    logits = torch.randn(6, V, generator=g, requires_grad=True)
    got = answer_losses(logits, targets, ce_weight=0.7, kl_weight=1.3)
    expected, start = [], 0
    for t in targets:
        logp = logits[start:start + len(t.answer_ids)].log_softmax(-1)
        loss = 0.7 * F.nll_loss(logp, torch.tensor(t.answer_ids), reduction="none")
        if t.topk_ids is not None:
            loss = loss - 1.3 * (t.topk_logprobs.float().exp() * logp.gather(-1, t.topk_ids.long())).sum(-1)
        expected.append(loss.mean())
        start += len(t.answer_ids)
    torch.testing.assert_close(got, torch.stack(expected))
    got.sum().backward()
    assert logits.grad.abs().sum() > 0
