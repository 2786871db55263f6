"""SPEC §2: filtering, splits, pair splits, tokenisation rule."""

from __future__ import annotations

import pytest
import torch

from ltmia.data import encode, filter_texts, lm_labels, make_splits, pair_splits, text_hash
from ltmia.errors import InputError, NotEnoughTextsError


def toy_corpus(n: int = 300) -> list[str]:
    return [
        f"  Text number {i}: " + "the quick brown fox jumps over the lazy dog " * (1 + i % 3)
        for i in range(n)
    ]


def test_filter_drops_texts_of_fifty_chars_or_fewer():
    texts = ["x" * 50, "  " + "y" * 50 + "  ", "z" * 51, " " + "w" * 60 + "\n"]
    assert filter_texts(texts) == ["z" * 51, "w" * 60]


def test_split_sizes_disjoint_and_balanced():
    splits = make_splits(toy_corpus(), n_members=100, n_val=20, n_non_members=100, seed=42)
    assert (len(splits.members), len(splits.val), len(splits.non_members)) == (100, 20, 100)
    sets = [set(splits.members), set(splits.val), set(splits.non_members)]
    assert sum(map(len, sets)) == len(set.union(*sets)) == 220
    assert {len(v) for v in splits.pairs.values()} == {90, 5}
    assert (len(splits.pairs["train"]), len(splits.pairs["val"]), len(splits.pairs["test"])) == (90, 5, 5)
    assert sorted(i for pairs in splits.pairs.values() for i in pairs) == list(range(100))


def test_splits_are_deterministic_and_seeded():
    a = make_splits(toy_corpus(), 50, 10, 50, seed=42)
    b = make_splits(toy_corpus(), 50, 10, 50, seed=42)
    c = make_splits(toy_corpus(), 50, 10, 50, seed=7)
    assert a.record() == b.record()
    assert a.members != c.members
    assert pair_splits(100, 42) == pair_splits(100, 42) != pair_splits(100, 1)


def test_split_does_not_depend_on_input_order_beyond_filtering():
    texts = toy_corpus()
    assert make_splits(texts, 50, 10, 50).members == make_splits(texts[::-1], 50, 10, 50).members


def test_record_proves_membership():
    splits = make_splits(toy_corpus(), 20, 5, 20, source={"corpus": "toy"})
    record = splits.record()
    assert record["hashes"]["members"] == [text_hash(t) for t in splits.members]
    assert record["sizes"] == {"members": 20, "val": 5, "non_members": 20}
    assert record["source"] == {"corpus": "toy"} and len(record["fingerprint"]) == 64
    assert all(t.strip() == t for t in splits.members)


def test_too_small_corpus_says_what_it_has_and_needs():
    with pytest.raises(NotEnoughTextsError, match=r"has 300 texts .* needs 610"):
        make_splits(toy_corpus(), 300, 10, 300)


def test_unequal_members_and_non_members_refused():
    with pytest.raises(InputError, match="must equal"):
        make_splits(toy_corpus(), 10, 5, 20)


def test_encode_no_bos_eos_last_right_padding(tokenizer):
    text = "Return the number of items in a container."
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids, mask = encode(tokenizer, [text], "text", seq_len=64)
    n = len(plain) + 1
    assert ids.shape == mask.shape == (1, 64)
    assert ids[0, : n - 1].tolist() == plain  # no BOS in front
    assert ids[0, n - 1].item() == tokenizer.eos_token_id
    assert mask[0].tolist() == [1] * n + [0] * (64 - n)
    assert (ids[0, n:] == tokenizer.pad_token_id).all()


def test_text_truncates_right_and_code_left(tokenizer, docstrings):
    long_text = max(docstrings, key=len)
    plain = tokenizer(long_text, add_special_tokens=False)["input_ids"]
    assert len(plain) > 20
    text_ids, text_mask = encode(tokenizer, [long_text], "text", seq_len=16)
    code_ids, code_mask = encode(tokenizer, [long_text], "code", seq_len=16)
    assert text_ids[0].tolist() == [*plain[:15], tokenizer.eos_token_id]
    assert code_ids[0].tolist() == [*plain[-15:], tokenizer.eos_token_id]
    assert text_mask.all() and code_mask.all()


def test_pad_is_eos_when_tokenizer_has_no_pad(tokenizer):
    import copy

    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    ids, mask = encode(no_pad, ["short text"], "text", seq_len=12)
    assert (ids[0][mask[0] == 0] == no_pad.eos_token_id).all()


def test_labels_mask_pads_but_keep_eos():
    ids = torch.tensor([[5, 6, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    assert lm_labels(ids, mask).tolist() == [[5, 6, 0, -100, -100]]


def test_bos_always_prepends_bos_and_keeps_l_minus_2_tokens(tokenizer, docstrings):
    long_text = max(docstrings, key=len)
    plain = tokenizer(long_text, add_special_tokens=False)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    text_ids, text_mask = encode(tokenizer, [long_text], "text", seq_len=16, bos="always")
    code_ids, _ = encode(tokenizer, [long_text], "code", seq_len=16, bos="always")
    assert text_ids[0].tolist() == [bos, *plain[:14], eos]
    assert code_ids[0].tolist() == [bos, *plain[-14:], eos]
    assert text_mask.all()
    short, mask = encode(tokenizer, ["Return the number of items."], "text", seq_len=32, bos="always")
    n = len(tokenizer("Return the number of items.", add_special_tokens=False)["input_ids"])
    assert short[0, 0].item() == bos and short[0, n + 1].item() == eos and int(mask.sum()) == n + 2


def test_resolve_bos_auto_follows_the_tokenizer(tokenizer):
    import copy

    from ltmia.data import resolve_bos

    assert resolve_bos(tokenizer, "never") == "never" and resolve_bos(tokenizer, "always") == "always"
    assert resolve_bos(tokenizer, "auto") == "never"  # the zoo tokenizer adds no special tokens
    adds = copy.deepcopy(tokenizer)
    adds._tokenizer.post_processor = __import__("tokenizers").processors.TemplateProcessing(
        single=f"{adds.bos_token} $A", special_tokens=[(adds.bos_token, adds.bos_token_id)]
    )
    assert resolve_bos(adds, "auto") == "always"
    with pytest.raises(InputError, match="bos 'sometimes'"):
        resolve_bos(tokenizer, "sometimes")
    no_bos = copy.deepcopy(tokenizer)
    no_bos.bos_token = None
    with pytest.raises(InputError, match="needs a tokenizer with a BOS"):
        resolve_bos(no_bos, "always")
