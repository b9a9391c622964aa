"""The training recipe end to end on a tiny model saved to disk: the facts-only first stage, then a second
stage started from its checkpoint with `init_from`."""

import json

import pytest
import torch
from tiny import TINY_HYPERNET, tiny_model

from d2l_memory import checkpoint as ckpt
from d2l_memory.training.recipe import DataSpec, run
from d2l_memory.training.trainer import TrainConfig

TINY = {**TINY_HYPERNET, "num_blocks": 1}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    model, tok = tiny_model()
    path = tmp_path_factory.mktemp("tiny_base")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _params(directory):
    state = ckpt.load_state(directory, ckpt.read_config(directory))
    return {k: v.float() for k, v in state.items() if k not in ("latent_mean", "feat_mean", "feat_std")}


def test_data_spec_validates_fields():
    with pytest.raises(ValueError, match="single_facts"):
        DataSpec(facts_only=True, single_facts=0)
    with pytest.raises(ValueError, match="DataSpec.niah"):
        DataSpec(niah=-1)
    with pytest.raises(ValueError, match="single_facts are cut from the personal samples"):
        DataSpec(personal=0, single_facts=10)


def test_facts_only_stage_then_init_from_stage(tmp_path, tiny_base):
    spec1 = DataSpec(personal=12, niah=0, realdoc=0, single_facts=40, facts_only=True)
    cfg1 = TrainConfig(out_dir="", steps=3, docs_per_step=2, qas_per_doc=1, lr=1e-3, warmup=1, save_every=100,
                       log_every=100)
    first = run(str(tmp_path / "s1"), tiny_base, spec1, cfg1, hypernet_overrides=TINY, base_dtype=torch.float32)
    meta = ckpt.read_config(first)["training"]
    assert meta["steps"] == 3 and meta["data"]["facts_only"] is True
    n_samples = json.loads((tmp_path / "s1" / "train_config.json").read_text())["extra"]["n_samples"]
    assert n_samples == 40  # the single facts alone, not the 12 full profiles as well

    # Rerunning into the same directory with other data counts must not silently reuse the cached data.
    with pytest.raises(ValueError, match=r"personal: cached 12, asked 13"):
        run(str(tmp_path / "s1"), tiny_base, DataSpec(personal=13, niah=0, realdoc=0, single_facts=40,
                                                      facts_only=True), cfg1, hypernet_overrides=TINY)

    with pytest.raises(ValueError, match="architecture"):
        run(str(tmp_path / "bad"), tiny_base, DataSpec(personal=12, niah=0, realdoc=0), init_from=str(first),
            hypernet_overrides={"rank": 2})

    # A second stage on the full samples with a vanishing lr: it starts from the first stage's weights.
    spec2 = DataSpec(personal=12, niah=0, realdoc=0)
    cfg2 = TrainConfig(out_dir="", steps=2, docs_per_step=2, qas_per_doc=1, lr=1e-12, min_lr=0.0, warmup=1,
                       save_every=100, log_every=100)
    second = run(str(tmp_path / "s2"), tiny_base, spec2, cfg2, init_from=str(first), base_dtype=torch.float32)
    assert ckpt.read_config(second)["training"]["config"]["extra"]["init_from"] == str(first)
    p1, p2 = _params(first), _params(second)
    assert p1.keys() == p2.keys()
    for k in p1:
        torch.testing.assert_close(p2[k], p1[k], rtol=1e-2, atol=1e-6, msg=k)
    # Overrides that only add parts (here the copy path, gains at 0) extend the trained checkpoint.
    ext = run(str(tmp_path / "s4"), tiny_base, spec2, cfg2, init_from=str(first), base_dtype=torch.float32,
              hypernet_overrides={"copy_values": True})
    pe = _params(ext)
    assert ckpt.read_config(ext)["hypernet"]["copy_values"] is True and set(pe) > set(p1)
    for k in p1:
        torch.testing.assert_close(pe[k], p1[k], rtol=1e-2, atol=1e-6, msg=k)
    fresh = run(str(tmp_path / "s3"), tiny_base, spec2, cfg2, hypernet_overrides=TINY, base_dtype=torch.float32,
                until=1)
    assert any(not torch.allclose(_params(fresh)[k], p1[k]) for k in p1)


def test_samples_only_then_training_computes_the_targets(tmp_path, tiny_base, capsys):
    """--samples-only writes the data without a model or targets (built on a CPU box); a later run on the same
    out dir reuses those samples and computes only the targets; another spec on that dir is refused."""
    from d2l_memory.training.recipe import main
    from d2l_memory.training.teacher import load_targets

    out = tmp_path / "run"
    args = ["--out", str(out), "--base-model", tiny_base, "--personal", "4", "--niah", "3", "--realdoc", "0"]
    main([*args, "--samples-only"])
    data = out / "data"
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"samples": str(data / "train.jsonl")}
    lines = (data / "train.jsonl").read_text().splitlines()
    assert len(lines) == 7 and not (data / "targets.json").exists() and not (out / "final").exists()
    assert json.loads((data / "spec.json").read_text())["niah"] == 3

    spec = DataSpec(personal=4, niah=3, realdoc=0)
    cfg = TrainConfig(out_dir="", steps=1, warmup=0, docs_per_step=2, qas_per_doc=1, save_every=100, max_chunks=2)
    run(str(out), tiny_base, spec, cfg, hypernet_overrides=TINY)
    assert (data / "train.jsonl").read_text().splitlines() == lines  # reused, not rebuilt
    targets = load_targets(data / "targets")
    assert len(targets) == sum(len(json.loads(line)["qas"]) for line in lines)
    with pytest.raises(ValueError, match="niah: cached 3, asked 5"):
        main([*args[:-4], "--niah", "5", "--realdoc", "0", "--samples-only"])


def test_samples_only_with_val_every_also_writes_the_heldout_samples_a_run_reuses(tmp_path, tiny_base, capsys):
    """An offline GPU machine cannot fetch the real documents' packages, so the held-out documents are built
    with the training ones (--samples-only --val-every) and the training run there only adds their targets."""
    from d2l_memory.training.recipe import main

    out = tmp_path / "run"
    args = ["--out", str(out), "--base-model", tiny_base, "--personal", "4", "--niah", "2", "--realdoc", "0",
            "--val-every", "1", "--val", "personal=3,niah=2,facts=2", "--steps", "1", "--warmup", "0",
            "--docs-per-step", "2", "--qas-per-doc", "1", "--hypernet", json.dumps(TINY), "--base-dtype", "float32"]
    main([*args, "--samples-only"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    val = out / "val_data"
    assert printed == {"samples": str(out / "data" / "train.jsonl"), "val_samples": str(val / "test.jsonl")}
    lines = (val / "test.jsonl").read_text().splitlines()
    assert len(lines) == 5 and not (val / "targets.json").exists()
    assert json.loads((val / "spec.json").read_text())["split"] == "test"
    main(args)
    assert (val / "test.jsonl").read_text().splitlines() == lines  # reused, not rebuilt
    assert (val / "targets.json").is_file()
    assert [json.loads(x)["step"] for x in (out / "val.jsonl").read_text().splitlines()] == [0, 1]


def test_val_every_logs_a_heldout_curve_and_validate_compares_checkpoints(tmp_path, tiny_base, capsys):
    """--val-every scores held-out test-split documents at step 0 and every N steps (val.jsonl, kept in the
    resume state); `validate` scores saved checkpoints on the same kind of held-out set."""
    from d2l_memory.training import validate
    from d2l_memory.training.recipe import main

    out = tmp_path / "run"
    args = ["--out", str(out), "--base-model", tiny_base, "--personal", "6", "--niah", "4", "--realdoc", "0",
            "--steps", "4", "--warmup", "1", "--docs-per-step", "2", "--qas-per-doc", "1", "--save-every", "2",
            "--hypernet", json.dumps(TINY), "--base-dtype", "float32", "--val-every", "2",
            "--val", "personal=4,niah=4,facts=4", "--keep-every", "2"]
    main([*args, "--until", "2"])
    main(args)  # resumes at step 2
    curve = [json.loads(line) for line in (out / "val.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curve] == [0, 2, 4]
    for c in curve:
        assert set(c["val"]) == {"personal", "niah", "facts"}
        assert c["val"]["niah"]["docs"] == 4 and c["val"]["niah"]["own"] > 0
        assert c["val"]["personal"]["gap"] is not None
    test_ids = {json.loads(line)["id"] for line in (out / "val_data" / "test.jsonl").read_text().splitlines()}
    train_ids = {json.loads(line)["id"] for line in (out / "data" / "train.jsonl").read_text().splitlines()}
    assert test_ids and not test_ids & train_ids
    state = json.loads((out / "resume" / "state.json").read_text())
    assert [v["step"] for v in state["val_history"]] == [0, 2, 4]

    capsys.readouterr()
    kept = [out / "step_00002", out / "step_00004"]  # --keep-every 2, across the resume
    res = validate.main([str(out / "final"), *map(str, kept), "--base-model", tiny_base, "--personal", "4",
                         "--niah", "4", "--facts", "4", "--data", str(out / "val_data"),
                         "--out", str(tmp_path / "v.json")])
    # The same held-out set and weights as the run's entries: the same numbers (final = the step-4 snapshot).
    for g in ("personal", "niah", "facts"):
        assert res[str(out / "final")][g]["own"] == pytest.approx(curve[-1]["val"][g]["own"], rel=1e-4)
        assert res[str(kept[1])][g]["own"] == pytest.approx(curve[-1]["val"][g]["own"], rel=1e-4)
        assert res[str(kept[0])][g]["own"] == pytest.approx(curve[1]["val"][g]["own"], rel=1e-4)
    assert res[str(kept[0])]["niah"]["own"] != res[str(kept[1])]["niah"]["own"]  # two different snapshots
    assert "| checkpoint |" in capsys.readouterr().out
    assert json.loads((tmp_path / "v.json").read_text())["results"].keys() == res.keys()


def test_val_flag_errors_name_the_fix(tmp_path, tiny_base, capsys):
    from d2l_memory.training.recipe import main

    base = ["--out", str(tmp_path / "x"), "--base-model", tiny_base, "--val-every", "5"]
    for bad, msg in (("personal=4,bogus=2", "kind=count"), ("facts=4", "give personal=N"), ("niah=x", "kind=count"),
                     ("", "no held-out")):
        with pytest.raises(SystemExit):
            main([*base, "--val", bad])
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
    for flag, value, msg in (("--keep-every", "-1", "`keep_every` must be an int >= 0"),
                             ("--steps", "0", "`steps` must be a positive int"),
                             ("--personal", "-3", "personal")):
        with pytest.raises(SystemExit):
            main([*base[:4], flag, value])
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


def test_phrasing_is_part_of_the_data_cache(tmp_path, tiny_base, capsys):
    from d2l_memory.training.recipe import main

    out = tmp_path / "run"
    args = ["--out", str(out), "--base-model", tiny_base, "--personal", "30", "--niah", "0", "--realdoc", "0",
            "--samples-only"]
    main([*args, "--phrasing", "mixed"])
    qs = [qa[0] if isinstance(qa, list) else qa["question"] for line in
          (out / "data" / "train.jsonl").read_text().splitlines() for qa in json.loads(line)["qas"]]
    assert any("the user" in q for q in qs) and any(" my " in q or " I " in q for q in qs)
    assert any("the user" not in q and " my " not in q and " I " not in q for q in qs)  # named
    assert json.loads((out / "data" / "spec.json").read_text())["phrasing"] == "mixed"
    with pytest.raises(ValueError, match="phrasing: cached 'mixed', asked 'third'"):
        main(args)


def test_heldout_groups_keep_real_documents_apart_from_single_facts():
    """Real documents carry their corpus as meta["source"], like single facts carry their profile: they are
    still reported as "realdoc" (they were once averaged into "facts")."""
    from d2l_memory.data.types import QA, Sample
    from d2l_memory.training.validate import label

    q = (QA("q?", "a"),)
    assert label(Sample("Ada lives in Lyon.", q, "personal", "p-fact0", {"source": "p"})) == "facts"
    assert label(Sample("Ada lives in Lyon. Ada has a dog.", q, "personal", "p", {})) == "personal"
    assert label(Sample("What is X?\n\nX is Y.", q, "realdoc", "r", {"source": "python_faq"})) == "realdoc"
    assert label(Sample("... 48213 ...", q, "niah", "n", {})) == "niah"
