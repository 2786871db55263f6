"""Costly attacks on a stub LM whose logits are set by hand, against values computed by hand.

The stub reads a (V, V) table: the logits predicting the token after x_t are table[x_t] + first[x_0], so a
prefix (which changes x_0) changes every prediction, as conditioning should, and the gradient of the loss
with respect to the table is known in closed form. The tokenizer is word level: one token per word.
"""

from __future__ import annotations

import math
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from ltmia.attacks import ATTACKS
from ltmia.attacks.costly import COSTLY_ATTACKS, Cost, costly_score
from ltmia.attacks.costly.con_recall import ConRecallSettings
from ltmia.attacks.costly.dc_pdd import DcPddSettings, first_occurrences, token_counts
from ltmia.attacks.costly.gradnorm import GradNormSettings
from ltmia.attacks.costly.neighbourhood import NeighbourhoodSettings
from ltmia.attacks.costly.pac import PacSettings, polarized_distance, swapped
from ltmia.attacks.costly.passes import Models
from ltmia.attacks.costly.recall import RecallSettings
from ltmia.attacks.costly.samia import SamiaSettings, rouge1_recall
from ltmia.errors import InputError, UnknownNameError

WORDS = ["<eos>", "<bos>", "<unk>", "a", "b", "c", "d", "A", "B"]
EOS, A, B, C, D, UPPER_A = 0, 3, 4, 5, 6, 7
V = len(WORDS)


@pytest.fixture(scope="module")
def words():
    """A word-level tokenizer over `WORDS` (EOS = pad = ``<eos>``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<eos>", pad_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )


class TableLM(nn.Module):
    """logits[t] = table[x_t] + first[x_0]; ``window`` is its declared context limit."""

    def __init__(self, table=None, first=None, window: int = 64) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(V, V) if table is None else torch.as_tensor(table).float())
        self.register_buffer("first", torch.zeros(V, V) if first is None else torch.as_tensor(first).float())
        self.head = nn.Identity()
        self.config = SimpleNamespace(max_position_embeddings=window)

    def get_output_embeddings(self) -> nn.Module:
        return self.head

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.head(self.table[input_ids] + self.first[input_ids[:, :1]]))


def pair(words, target, reference=None) -> Models:
    return Models(target, reference or TableLM(), words, batch_size=2)


def log_softmax_at(logits: list[float], index: int) -> float:
    return logits[index] - math.log(sum(math.exp(x) for x in logits))


def row(**entries: float) -> list[float]:
    """A logit row of zeros with entries named by token index, e.g. row(**{"4": 2.0})."""
    out = [0.0] * V
    for key, value in entries.items():
        out[int(key)] = value
    return out


def test_registry_lists_the_costly_attacks_apart_from_the_one_pass_ones():
    assert COSTLY_ATTACKS.names() == [
        "recall", "con_recall", "dc_pdd", "lowercase", "pac", "neighbourhood", "samia", "gradnorm"
    ]  # fmt: skip
    assert len(ATTACKS) == 7 and not set(ATTACKS) & set(COSTLY_ATTACKS)
    with pytest.raises(UnknownNameError, match="choose one of"):
        COSTLY_ATTACKS.get("nope")
    with pytest.raises(InputError, match="has no setting gama"):
        COSTLY_ATTACKS.get("con_recall").make_settings(gama=0.1)


def test_costs_are_declared_and_priced_in_shared_passes():
    cost = COSTLY_ATTACKS.get("recall").cost(RecallSettings(non_member_prefix=("x",) * 3), 128)
    assert cost == Cost(forward_passes=1, context_tokens=384, plain_pass=True)
    assert cost.shared_passes(128) == pytest.approx((128 + 384) / 256)
    assert COSTLY_ATTACKS.get("gradnorm").cost(GradNormSettings(), 128).shared_passes(128) == 1.5
    samia = COSTLY_ATTACKS.get("samia").cost(SamiaSettings(samples=4), 128)
    assert samia.generated_tokens == 4 * 64 and samia.backward_passes == 0
    assert (
        COSTLY_ATTACKS.get("neighbourhood").cost(NeighbourhoodSettings(neighbours=5), 128).forward_passes == 6
    )
    assert "backward pass" in COSTLY_ATTACKS.get("gradnorm").cost(GradNormSettings(), 128).describe()
    dc_pdd = COSTLY_ATTACKS.get("dc_pdd").cost(DcPddSettings(), 128).describe()
    assert "reference corpus" in dc_pdd and "plain pass" in dc_pdd
    assert not COSTLY_ATTACKS.get("samia").cost(SamiaSettings(), 128).plain_pass


# ---------------------------------------------------------------------------------------------- recall
def recall_model(window: int = 64) -> TableLM:
    """Own context (x_0 = a): b and EOS get +2; behind the prefix "c" (x_0 = c): uniform; behind only its
    final EOS (x_0 = EOS): b and EOS get +1; behind the member prefix "d": +3."""
    first = torch.zeros(V, V)
    first[A, B] = first[A, EOS] = 2.0
    first[EOS, B] = first[EOS, EOS] = 1.0
    first[D, B] = first[D, EOS] = 3.0
    return TableLM(first=first, window=window)


def two_favoured(bias: float) -> float:
    """log p of one of two tokens raised by ``bias`` among V."""
    return bias - math.log(2 * math.exp(bias) + V - 2)


def test_recall_is_conditional_over_plain_log_likelihood(words):
    """Text "a b" scores b (after a) and EOS (after b); both prefixes leave those positions' tokens alike."""
    models = pair(words, recall_model())
    result = costly_score("recall", models, ["a b"], RecallSettings(non_member_prefix=("c",)))
    expected = -math.log(V) / two_favoured(2.0)  # LL(x | "c <eos>") is uniform; LL(x) has +2
    assert result == pytest.approx([expected], rel=1e-6)


def test_recall_keeps_the_last_prefix_tokens_that_fit_the_window(words):
    """Window 4, text of 3 tokens: only the prefix's final EOS fits, so x_0 = EOS (+1 on b and EOS)."""
    models = pair(words, recall_model(window=4))
    result = costly_score("recall", models, ["a b"], RecallSettings(non_member_prefix=("c",)))
    assert result == pytest.approx([two_favoured(1.0) / two_favoured(2.0)], rel=1e-6)
    no_room = pair(words, recall_model(window=3))  # the text alone fills the window: LL(x | P) = LL(x)
    no_context = costly_score("recall", no_room, ["a b"], RecallSettings(non_member_prefix=("c",)))
    assert no_context == pytest.approx([1.0])
    with pytest.raises(InputError, match="non_member_prefix"):
        costly_score("recall", models, ["a b"])


def test_con_recall_contrasts_non_member_and_member_prefixes(words):
    models = pair(words, recall_model())
    settings = ConRecallSettings(non_member_prefix=("c",), member_prefix=("d",), gamma=0.5)
    result = costly_score("con_recall", models, ["a b"], settings)
    expected = (-math.log(V) - 0.5 * two_favoured(3.0)) / two_favoured(2.0)
    assert result == pytest.approx([expected], rel=1e-6)
    with pytest.raises(InputError, match="member_prefix"):
        costly_score("con_recall", models, ["a b"], ConRecallSettings(non_member_prefix=("c",)))


# ---------------------------------------------------------------------------------------------- dc_pdd
def test_dc_pdd_calibrates_first_occurrences_by_reference_frequency(words):
    """Uniform model (p = 1/9). "a b a b": scored tokens b, a, b (EOS is not); the second b is a repeat.
    Counts: b 9 times, a never; f = (count + 1) / (9 + 9)."""
    counts = token_counts(words, ["b b b b b b b b b"])
    assert counts[B] == 9 and counts.sum() == 9 and counts.shape == (V,)
    models = pair(words, TableLM())
    alpha_b, alpha_a = math.log(18 / 10) / V, math.log(18 / 1) / V
    unclipped = costly_score("dc_pdd", models, ["a b a b"], DcPddSettings(counts=counts, a=1.0))
    assert unclipped == pytest.approx([(alpha_b + alpha_a) / 2])  # not (2 alpha_b + alpha_a) / 3
    clipped = costly_score("dc_pdd", models, ["a b a b"], DcPddSettings(counts=counts, a=0.1))
    assert alpha_b < 0.1 < alpha_a and clipped == pytest.approx([(alpha_b + 0.1) / 2])
    assert first_occurrences(torch.tensor([4, 3, 4, 5])).tolist() == [True, True, False, True]
    with pytest.raises(InputError, match="token counts"):
        costly_score("dc_pdd", models, ["a b"])


# ------------------------------------------------------------------------------------------- lowercase
def test_lowercase_is_the_ratio_of_lowercased_to_original_loss(words):
    table = torch.zeros(V, V)
    table[UPPER_A, B] = 2.0  # "A" predicts "b" well, "a" does not
    table[B, EOS] = 1.0
    models = pair(words, TableLM(table))
    nll_original = -(log_softmax_at(row(**{"4": 2.0}), B) + log_softmax_at(row(**{"0": 1.0}), EOS)) / 2
    nll_lower = -(-math.log(V) + log_softmax_at(row(**{"0": 1.0}), EOS)) / 2
    result = costly_score("lowercase", models, ["A b"], costly_settings("lowercase"))
    assert result == pytest.approx([nll_lower / nll_original], rel=1e-6)


def costly_settings(name: str, **params):
    return COSTLY_ATTACKS.get(name).make_settings(**params)


# ------------------------------------------------------------------------------------------------- pac
def test_pac_compares_polarized_distance_with_swapped_copies(words):
    """A two-word text has one swap, so every augmentation of "a b" is "b a". With n = 2 scored positions
    the local and far regions are one value each: PD = highest - lowest log-prob."""
    table = torch.zeros(V, V)
    table[A, B], table[B, EOS], table[B, A], table[A, EOS] = 3.0, 1.0, -1.0, 0.5
    models = pair(words, TableLM(table))
    lp = {(s, t): log_softmax_at(table[s].tolist(), t) for s, t in [(A, B), (B, EOS), (B, A), (A, EOS)]}
    pd_text = max(lp[A, B], lp[B, EOS]) - min(lp[A, B], lp[B, EOS])
    pd_swapped = max(lp[B, A], lp[A, EOS]) - min(lp[B, A], lp[A, EOS])
    result = costly_score("pac", models, ["a b", "c"], PacSettings(augmentations=3))
    assert result == pytest.approx([pd_swapped - pd_text, 0.0])  # a one-word text cannot be swapped


def test_pac_pieces():
    values = torch.tensor([[-5.0, -1.0, -3.0, -2.0, -4.0, 0.0]])
    valid = torch.tensor([[True, True, True, True, True, False]])  # the 0.0 is padding
    # n = 5: far = max(1, floor(0.25)) = 1 highest (-1), local = floor(1.5) = 1 lowest (-5)
    assert polarized_distance(values, valid, 0.3, 0.05).tolist() == [4.0]
    assert polarized_distance(values, valid, 0.5, 0.5).tolist() == [(-1 - 2) / 2 - (-5 - 4) / 2]
    rng = np.random.default_rng(0)
    text = "one two three four five six seven eight nine ten"
    augmented = swapped(text, 0.3, rng)
    assert sorted(augmented.split(" ")) == sorted(text.split(" ")) and augmented != text
    again = swapped(text, 0.3, np.random.default_rng(0))
    assert again == augmented


# --------------------------------------------------------------------------------------- neighbourhood
def test_neighbourhood_swaps_the_reference_models_best_alternatives(words):
    """Text "a b": only "b" has a left context. The reference after "a" ranks b > c > d > ...; b itself and
    special tokens are skipped, so the best neighbours are "a c" then "a d"."""
    reference_table = torch.zeros(V, V)
    reference_table[A] = torch.tensor(row(**{"4": 4.0, "5": 3.0, "6": 2.0, "7": 1.0, "0": 5.0, "1": 5.0}))
    target_table = torch.zeros(V, V)
    target_table[A, B], target_table[A, C], target_table[C, EOS], target_table[D, EOS] = 2.0, 1.0, 3.0, -1.0
    models = pair(words, TableLM(target_table), TableLM(reference_table))

    def nll(second: int) -> float:
        after_a = log_softmax_at(target_table[A].tolist(), second)
        return -(after_a + log_softmax_at(target_table[second].tolist(), EOS)) / 2

    two = costly_score("neighbourhood", models, ["a b"], NeighbourhoodSettings(neighbours=2, top_k=10))
    assert two == pytest.approx([(nll(C) + nll(D)) / 2 - nll(B)], rel=1e-6)
    one = costly_score("neighbourhood", models, ["a b"], NeighbourhoodSettings(neighbours=1))
    assert one == pytest.approx([nll(C) - nll(B)], rel=1e-6)
    assert costly_score("neighbourhood", models, ["a"], NeighbourhoodSettings()) == [0.0]  # nothing to swap


# ----------------------------------------------------------------------------------------------- samia
class ScriptedLM(TableLM):
    """``generate`` returns the prompt followed by scripted continuations, one per sample row."""

    def __init__(self, script: list[list[int]]) -> None:
        super().__init__()
        self.script, self.calls = script, []

    def generate(self, input_ids, max_new_tokens, **kwargs):
        self.calls.append({"prompt": input_ids.tolist(), "max_new_tokens": max_new_tokens, **kwargs})
        rows = [(s + [EOS] * max_new_tokens)[:max_new_tokens] for s in self.script[: input_ids.shape[0]]]
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)


def test_samia_averages_rouge1_recall_of_sampled_continuations(words):
    """ "a b c d": the prompt is "a b", the reference half "c d" (2 tokens, so at most 2 new tokens)."""
    model = ScriptedLM([[C, C], [D, EOS, C], [C, D]])
    models = pair(words, model)
    result = costly_score("samia", models, ["a b c d"], SamiaSettings(samples=3))
    assert result == pytest.approx([(1 / 2 + 1 / 2 + 1) / 3])  # "c c", "d" (cut at EOS), "c d"
    call = model.calls[0]
    assert call["prompt"] == [[A, B]] * 3 and call["max_new_tokens"] == 2
    assert call["do_sample"] and call["top_k"] == 50 and call["temperature"] == 1.0
    starred = costly_score("samia", models, ["a b c d"], SamiaSettings(samples=3, zlib=True))
    sizes = [len(zlib.compress(text.encode())) for text in ("c c", "d", "c d")]
    assert starred == pytest.approx([(sizes[0] / 2 + sizes[1] / 2 + sizes[2]) / 3])
    assert rouge1_recall(["x", "x", "y"], ["x", "y", "y", "z"]) == 0.5
    assert rouge1_recall([], ["x"]) == 0.0 == rouge1_recall(["x"], [])


# -------------------------------------------------------------------------------------------- gradnorm
def test_gradnorm_is_the_negated_gradient_norm_of_the_loss(words):
    """Uniform table, "a b": loss = mean of two -log(1/9); d loss / d table[a] = (u - e_b) / 2 and
    d / d table[b] = (u - e_eos) / 2 with u = 1/9, so the L2 norm is sqrt(2 * (8/9) / 4) = 2/3."""
    model = TableLM()
    model.table.requires_grad_(False)
    models = pair(words, model)
    assert costly_score("gradnorm", models, ["a b"], GradNormSettings(p=2)) == pytest.approx([-2 / 3])
    assert costly_score("gradnorm", models, ["a b"], GradNormSettings(p=math.inf)) == pytest.approx([-4 / 9])
    assert costly_score("gradnorm", models, ["a b"], GradNormSettings(p=1)) == pytest.approx([-16 / 9])
    assert not model.table.requires_grad and model.table.grad is None  # left as it was found
    with pytest.raises(InputError, match="p must be 1, 2 or inf"):
        GradNormSettings(p=3)
