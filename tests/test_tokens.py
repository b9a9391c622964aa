"""Token counting and cutting (d2l_memory.tokens) and the memory splitter built on it, with a word-level
tokenizer made in the test (no download)."""

import pytest

from d2l_memory.memory.sources import split_units
from d2l_memory.tokens import count_tokens, token_windows

TEXT = ("The lighthouse keeper wrote every evening. She noted the wind, the ships and the colour of the sea. "
        "On the third of May a storm broke two windows and flooded the cellar where the lamp oil was kept.")


@pytest.fixture(scope="module")
def tok():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.train_from_iterator([TEXT], trainers.WordLevelTrainer(special_tokens=["[UNK]"], show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")


def test_token_windows_cut_at_word_starts_and_count_each_piece(tok):
    n_total = count_tokens(tok, TEXT)
    assert n_total == len(TEXT.split())
    assert token_windows(tok, TEXT, n_total) == [(TEXT, n_total)]  # fits: whole
    pieces = token_windows(tok, TEXT, 7)
    assert len(pieces) == -(-n_total // 7)
    assert all(n <= 7 and count_tokens(tok, p) == n for p, n in pieces)
    assert sum(n for _, n in pieces) == n_total
    assert " ".join(p for p, _ in pieces).split() == TEXT.split()  # nothing lost, no word cut in two
    with pytest.raises(ValueError, match="size must be a positive"):
        token_windows(tok, TEXT, 0)


def test_token_windows_without_offsets_decode_plain_windows(tok):
    class Slow:  # a slow tokenizer: no offset mapping
        def __call__(self, text, **kw):
            return {"input_ids": tok(text, add_special_tokens=False)["input_ids"]}

        def decode(self, ids):
            return tok.decode(ids)

    pieces = token_windows(Slow(), TEXT, 10)
    assert [n for _, n in pieces][:-1] == [10] * (len(pieces) - 1)
    assert " ".join(p for p, _ in pieces).split() == TEXT.split()


def test_split_units_packs_whole_units_then_sentences_then_word_windows(tok):
    short = ["Alice lives in Lyon.", "She has a cat called Miso.", "Her brother is a pilot."]
    assert split_units(short, 100, tok) == ["\n\n".join(short)]  # all fit in one piece, in order
    chunks = split_units(short, 8, tok)  # 4 + 6 + 5 tokens, the separator counts one: no two fit together
    assert chunks == short
    long_sentence = " ".join(["word"] * 30) + "."
    chunks = split_units([TEXT, long_sentence], 12, tok)
    assert all(count_tokens(tok, c) <= 12 for c in chunks)
    assert " ".join(chunks).split() == (TEXT + " " + long_sentence).split()  # nothing lost, in order
    assert "The lighthouse keeper wrote every evening." in chunks  # the long unit was split on sentences
