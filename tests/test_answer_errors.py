"""benchmarks/answer_errors.py sorts wrong answers; evaluate(keep_examples=-1) keeps every prediction with its document."""

import pytest
from benchscripts import load_benchmark


def _script():
    return load_benchmark("answer_errors")


DOCS = {"a": "The user's husband is Magnus. The user's name is Vera. The magic number is 8576.",
        "b": "The user lives in Valencia with her partner Casey."}


def test_classify_sorts_each_kind_of_wrong_answer():
    classify = _script().classify
    assert classify("8576", "8576", DOCS["a"], [DOCS["b"]]) is None
    assert classify("Magnus", "magnus.", DOCS["a"], [DOCS["b"]]) is None  # normalised like exact match
    assert classify("8576", "8756", DOCS["a"], [DOCS["b"]]) == "order"
    assert classify("Magnus", "Vera", DOCS["a"], [DOCS["b"]]) == "own_doc"
    assert classify("Magnus", "Casey", DOCS["a"], [DOCS["b"]]) == "other_doc"
    assert classify("Magnus", "Vancouver", DOCS["a"], [DOCS["b"]]) == "absent"
    assert classify("Magnus", "Ver", DOCS["a"], [DOCS["b"]]) == "absent"  # whole words only, not a substring
    assert classify("Magnus", "", DOCS["a"], [DOCS["b"]]) == "absent"


def test_analyse_counts_categories_first_tokens_and_digit_positions():
    analyse = _script().analyse
    rows = [{"gold": "8576", "pred": "8576", "doc": "a"}, {"gold": "8576", "pred": "8756", "doc": "a"},
            {"gold": "8576", "pred": "12", "doc": "a"}]
    got = analyse(rows, DOCS, first_token=lambda t: t[:1])
    assert got["right"] == 1 and got["wrong"] == 2 and got["order"] == 1 and got["absent"] == 1
    assert got["wrong_first_token_right"] == 1  # 8756 starts like 8576, 12 does not
    assert got["digit_right_by_position"] == [2, 1, 1, 2]
    both = _script().pool([got, analyse(rows[:1], DOCS, first_token=lambda t: t[:1])])  # two draws summed
    assert both["n"] == 4 and both["right"] == 2 and both["order"] == 1
    assert both["digit_right_by_position"] == [3, 2, 2, 3]


def test_evaluate_keeps_every_prediction_with_its_document_when_asked():
    from tiny import tiny_d2l

    from d2l_memory.data.types import QA, Sample
    from d2l_memory.evaluation import evaluate

    d2l = tiny_d2l()
    samples = [Sample(context=f"Doc {i} says {i}.", qas=(QA("What?", str(i)), QA("Which?", str(i))),
                      kind="personal", id=f"s{i}") for i in range(4)]
    every = evaluate(d2l, samples, conditions=["d2l", "no_doc"], max_new_tokens=2, keep_examples=-1)
    assert [len(every[c]["examples"]) for c in ("d2l", "no_doc")] == [8, 8]
    assert [e["doc"] for e in every["d2l"]["examples"]] == ["s0", "s0", "s1", "s1", "s2", "s2", "s3", "s3"]
    assert len(evaluate(d2l, samples, conditions=["d2l"], max_new_tokens=2)["d2l"]["examples"]) == 5
    with pytest.raises(ValueError, match="keep_examples"):
        evaluate(d2l, samples, conditions=["d2l"], keep_examples=-2)


def test_doc_gain_scales_the_document_part_of_the_head_inputs():
    import torch
    from tiny import make_loud, tiny_d2l

    ae = load_benchmark("answer_errors")
    d2l = tiny_d2l()
    make_loud(d2l)
    d2l.hypernet.eval()
    docs = ["Alice lives in Lisbon.", "The special magic number is 1234.", "Bob keeps a ferret called Max."]
    centre = ae.head_input_centre(d2l, docs)
    z = d2l.hypernet.latents(*d2l.encoder.activations(d2l.doc_chunks(docs[0])[:1]))
    u = d2l.hypernet.head_inputs(z)
    plain = d2l.internalize(docs[0]).A["down_proj"]
    ae.doc_gain(d2l, centre, 1.0)
    assert torch.allclose(d2l.internalize(docs[0]).A["down_proj"], plain)  # K = 1: the adapter is unchanged
    ae.doc_gain(d2l, centre, 2.0)
    assert torch.allclose(d2l.hypernet.head_inputs(z) - centre, 2 * (u - centre), atol=1e-6)
    assert not torch.allclose(d2l.internalize(docs[0]).A["down_proj"], plain)
    ae.doc_gain(d2l, centre, 2.0)  # re-patching starts from the class's method, not the patched one
    assert torch.allclose(d2l.hypernet.head_inputs(z) - centre, 2 * (u - centre), atol=1e-6)
