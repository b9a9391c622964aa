"""A few engine checks on the real SmolLM2-135M-Instruct (fetched once by scripts/bootstrap.sh)."""

import pytest
import torch
from tiny import make_loud

from d2l_memory.engine import D2L

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def d2l():
    return D2L.from_base_model("smollm2-135m", seed=0, autocast=False)


def test_smollm2_fresh_adapter_is_identity_and_peft_export_matches(d2l, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from d2l_memory.models import resolve_model

    ad = d2l.internalize("The user's name is Alice. Alice lives in Lisbon.")
    ids = torch.tensor([d2l.prompt_ids("What city does the user live in?")])
    base = d2l.model(input_ids=ids).logits
    with d2l.lora_context([ad]):
        assert torch.equal(d2l.model(input_ids=ids).logits, base)
    make_loud(d2l, scale=1.0)  # move off the zero init so the export check is not trivial
    ad = d2l.internalize("The user's name is Alice. Alice lives in Lisbon.")
    with d2l.lora_context([ad]):
        ours = d2l.model(input_ids=ids).logits
    assert (ours - base).abs().max() > 1e-3
    ad.save_peft(tmp_path / "peft")
    fresh = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m")[0], dtype=torch.float32)
    theirs = PeftModel.from_pretrained(fresh, str(tmp_path / "peft")).eval()(input_ids=ids).logits
    assert (ours - theirs).abs().max().item() < 1e-4


def test_smollm2_chat_template_affixes_wrap_documents(d2l):
    chunks = d2l.doc_chunks("word " * 3000, chunk_tokens=1024)
    assert len(chunks) == 3
    text = d2l.tokenizer.decode(chunks[1])
    assert text.startswith("<|im_start|>system") and "<|im_start|>user\n" in text
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
