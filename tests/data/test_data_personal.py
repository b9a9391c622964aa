"""Synthetic personal-memory builder."""

from collections import Counter

import pytest

from d2l_memory.data import wordlists as W
from d2l_memory.data.personal import UPDATABLE, build_personal, names_for_split, pet_names_for_split
from d2l_memory.data.types import approx_tokens

SPLITS = ("train", "val", "test")


def test_word_lists_are_big_enough():
    assert len(W.FIRST_NAMES) >= 100 and len(W.CITIES) >= 60 and len(W.JOBS) >= 40
    assert len(W.EMPLOYERS) >= 40 and len(W.PET_NAMES) >= 40 and len(W.FOODS) >= 30


@pytest.mark.parametrize("style", ["profile", "transcript", "mixed"])
def test_deterministic_by_seed(style):
    a = build_personal(20, seed=5, style=style)
    assert a == build_personal(20, seed=5, style=style)
    assert [s.context for s in a] != [s.context for s in build_personal(20, seed=6, style=style)]


def test_answers_in_context_and_lengths():
    samples = build_personal(200, seed=0, style="mixed")
    assert Counter(s.meta["style"] for s in samples) == {"profile": 100, "transcript": 100}
    for s in samples:
        assert s.kind == "personal" and 4 <= len(s.qas) <= 6
        assert len({qa.question for qa in s.qas}) == len(s.qas)
        for qa in s.qas:
            assert qa.answer and qa.answer in s.context, (qa, s.context)
        lo, hi = (80, 200) if s.meta["style"] == "profile" else (150, 400)
        assert lo <= approx_tokens(s.context) <= hi


def test_transcript_messages_render_context():
    for s in build_personal(20, seed=1, style="transcript"):
        msgs = s.meta["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)
        assert s.context == "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in msgs)
        assert s.context.startswith("User: ")


def test_updates_answer_latest_value():
    samples = build_personal(300, seed=2, style="mixed")
    n_updates = 0
    for s in samples:
        updates = s.meta["updates"]
        asked = {f: qa for f, qa in zip(s.meta["qa_fields"], s.qas, strict=True)}
        for f, u in updates.items():
            n_updates += 1
            assert f in UPDATABLE and u["old"] != u["new"]
            assert asked[f].answer == u["new"]  # every updated fact is asked, answer = newest
            # The old value is stated before the newest value's last mention.
            assert s.context.find(u["old"]) < s.context.rfind(u["new"])
            if s.meta["style"] == "transcript":
                user_turns = [m["content"] for m in s.meta["messages"] if m["role"] == "user"]
                first_old = next(i for i, t in enumerate(user_turns) if u["old"] in t)
                update_turn = next(i for i, t in enumerate(user_turns) if u["new"] in t)
                assert update_turn > first_old
    assert n_updates > 100
    transcripts = [s for s in samples if s.meta["style"] == "transcript"]
    assert all(s.meta["updates"] for s in transcripts)


def test_first_person_questions():
    s = build_personal(5, seed=0, style="transcript", question_person="first")
    assert all("the user" not in qa.question for x in s for qa in x.qas)


def test_named_and_mixed_questions_keep_the_samples_of_third_person():
    third = build_personal(40, seed=3, split="test")
    named = build_personal(40, seed=3, split="test", question_person="named")
    mixed = build_personal(40, seed=3, split="test", question_person="mixed")
    assert mixed == build_personal(40, seed=3, split="test", question_person="mixed")  # deterministic
    kinds = set()
    for t, n, m in zip(third, named, mixed, strict=True):
        assert t.context == n.context == m.context and t.id == n.id == m.id
        first = t.meta["person"]["first"]
        for qt, qn, qm in zip(t.qas, n.qas, m.qas, strict=True):
            assert qt.answer == qn.answer == qm.answer
            assert qn.question == qt.question.replace("the user", first) and "the user" not in qn.question
            kinds.add("third" if "the user" in qm.question else "named" if first in qm.question and
                      qm.question == qn.question else "first" if " my " in qm.question or " I " in qm.question
                      else "other")
    assert kinds == {"third", "named", "first"}
    with pytest.raises(ValueError, match="question_person"):
        build_personal(1, question_person="second")


def test_name_pools_disjoint():
    names = {sp: {n for n, _ in names_for_split(sp)} for sp in SPLITS}
    pets = {sp: set(pet_names_for_split(sp)) for sp in SPLITS}
    for pool in (names, pets):
        assert not pool["train"] & pool["val"] and not pool["train"] & pool["test"]
        assert not pool["val"] & pool["test"]
        assert min(len(p) for p in pool.values()) >= 8


def test_held_out_splits_disjoint_from_train():
    built = {sp: build_personal(300, seed=0, split=sp) for sp in SPLITS}

    def people(samples):
        out = set()
        for s in samples:
            p = s.meta["person"]
            out |= {p["first"]} | {v for v in (p["partner"], p["sibling"]) if v}
        return out

    def pets(samples):
        return {s.meta["person"]["pet"] for s in samples} - {None}

    for held in ("val", "test"):
        assert not people(built["train"]) & people(built[held])
        assert not pets(built["train"]) & pets(built[held])
        assert not {s.id for s in built["train"]} & {s.id for s in built[held]}
        assert not {s.context for s in built["train"]} & {s.context for s in built[held]}
        assert people(built[held]) <= {n for n, _ in names_for_split(held)}


def test_bad_arguments():
    with pytest.raises(ValueError):
        build_personal(1, style="poem")
    with pytest.raises(ValueError):
        build_personal(1, split="dev")
