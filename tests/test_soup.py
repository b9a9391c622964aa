"""Weight averaging of hypernetwork checkpoints (d2l_memory.training.soup)."""

import json

import pytest
import torch
from tiny import make_loud, tiny_d2l

from d2l_memory.engine import D2L
from d2l_memory.errors import CheckpointError
from d2l_memory.training.soup import average_checkpoints, main


def _two_checkpoints(tmp_path):
    a, b = tiny_d2l(), tiny_d2l()
    make_loud(a, seed=1)
    make_loud(b, seed=2)
    return a, b, a.save_pretrained(tmp_path / "a", dtype=torch.float32), b.save_pretrained(tmp_path / "b",
                                                                                             dtype=torch.float32)


def test_soup_is_the_weighted_mean_and_loads_as_a_checkpoint(tmp_path):
    a, b, da, db = _two_checkpoints(tmp_path)
    out = average_checkpoints([da, db], tmp_path / "soup", weights=[0.25, 0.75], dtype=torch.float32)
    back = D2L.from_pretrained(out, model=a.model, tokenizer=a.tokenizer, autocast=False)
    sa, sb = a.hypernet.state_dict(), b.hypernet.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)
    for k, v in back.hypernet.state_dict().items():
        torch.testing.assert_close(v, 0.25 * sa[k] + 0.75 * sb[k])
    cfg = json.loads((out / "d2l_config.json").read_text())
    assert cfg["soup"] == {"sources": [str(da), str(db)], "weights": [0.25, 0.75]}
    # equal weights by default; a soup of a checkpoint with itself is that checkpoint
    same = average_checkpoints([da, da], tmp_path / "same", dtype=torch.float32)
    again = D2L.from_pretrained(same, model=a.model, tokenizer=a.tokenizer, autocast=False)
    for k, v in again.hypernet.state_dict().items():
        torch.testing.assert_close(v, sa[k])


def test_soup_rejects_bad_inputs_and_writes_nothing(tmp_path):
    a, _, da, db = _two_checkpoints(tmp_path)
    with pytest.raises(ValueError, match="sum to 1"):
        average_checkpoints([da, db], tmp_path / "x", weights=[0.5, 0.6])
    with pytest.raises(ValueError, match="one per source"):
        average_checkpoints([da, db], tmp_path / "x", weights=[1.0])
    with pytest.raises(ValueError, match="at least 2"):
        average_checkpoints([da], tmp_path / "x")
    with pytest.raises(ValueError, match="is one of the sources"):
        average_checkpoints([da, db], da)
    with pytest.raises(CheckpointError, match="no hypernetwork checkpoint"):
        average_checkpoints([da, tmp_path / "missing"], tmp_path / "x")
    other = tiny_d2l(rank=4) if a.config.rank != 4 else tiny_d2l(rank=2)
    do = other.save_pretrained(tmp_path / "other", dtype=torch.float32)
    with pytest.raises(CheckpointError, match="'hypernet'"):
        average_checkpoints([da, do], tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main([str(da), str(db), "--out", str(tmp_path / "x"), "--weights", "0.9", "0.9"])
    assert not (tmp_path / "x").exists()
