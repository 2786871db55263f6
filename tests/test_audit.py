"""The audit: end to end on a target fine-tuned here, the HTML report in headless Chromium, explanations,
and one test per kind of bad input (each a one-line error, or skipped/flagged and counted)."""

from __future__ import annotations

import html
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import save_base
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from ltmia.artefacts import CHECKED, read_manifest, write_manifest
from ltmia.audit import AuditSettings, audit, candidates, occlusion, read_labels, read_texts
from ltmia.classifier import LTMIA, ArraySource
from ltmia.classifier.checkpoint import shipped_dir
from ltmia.cli import app
from ltmia.data import make_splits
from ltmia.errors import InputError, OutputExistsError
from ltmia.finetune import Recipe, finetune
from ltmia.models import load_tokenizer
from ltmia.zoo.tokenizer import train_tokenizer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def splits(docstrings):
    texts = [text.replace("\n", " ") for text in docstrings[:200]]
    return make_splits(texts, 40, 4, 40, seed=0, source={"corpus": "stdlib docstrings"})


@pytest.fixture(scope="module")
def target(tmp_path_factory, tiny_base, splits) -> Path:
    """The tiny base fine-tuned 3 epochs on 40 members: memorised enough to audit."""
    recipe = Recipe(epochs=3, batch_size=8, lr=3e-3)
    return finetune(str(tiny_base), splits, tmp_path_factory.mktemp("t") / "target", recipe)


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory, splits) -> tuple[Path, Path]:
    """Members then non-members, one per line, with a labels file beside them."""
    folder = tmp_path_factory.mktemp("texts")
    (folder / "texts.txt").write_text("\n".join(splits.members + splits.non_members) + "\n")
    (folder / "labels.txt").write_text("\n".join(["member"] * 40 + ["0"] * 40) + "\n")
    return folder / "texts.txt", folder / "labels.txt"


@pytest.fixture(scope="module")
def audited(tmp_path_factory, target, texts_file) -> Path:
    """``ltmia audit`` with labels, through the CLI, as a user runs it."""
    out = tmp_path_factory.mktemp("audit") / "out"
    texts, labels = texts_file
    args = ["audit", "--target", str(target), "--texts", str(texts), "--labels", str(labels)]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--explain", "4"])
    assert result.exit_code == 0, result.output
    assert "80 texts scored, 0 empty skipped" in " ".join(result.output.split())
    return out


def test_members_score_higher_than_non_members(audited):
    table = json.loads((audited / "scores.json").read_text())
    scores = np.array([entry["lt_mia_score"] for entry in table])
    labels = np.array([entry["label"] for entry in table])
    assert len(table) == 80 and sorted(entry["index"] for entry in table) == list(range(80))
    assert scores[labels == 1].mean() > scores[labels == 0].mean()
    assert list(scores) == sorted(scores, reverse=True) and [e["rank"] for e in table] == list(range(1, 81))
    # the input positions line up with the labels file: members were written first
    assert all((entry["index"] < 40) == (entry["label"] == 1) for entry in table)
    metrics = json.loads((audited / "metrics.json").read_text())["metrics"]
    assert {"lt_mia", "loss", "ref_loss", "ez_mia", "wbc"} <= set(metrics)
    assert metrics["lt_mia"]["n_members"] == 40 == metrics["lt_mia"]["n_nonmembers"]
    low, high = metrics["lt_mia"]["auc_ci"]
    assert low <= metrics["lt_mia"]["auc"] <= high
    page = (audited / "report.html").read_text()
    assert f"[{low:.3f}, {high:.3f}]" in page and "stratified bootstrap interval" in page
    csv_lines = (audited / "scores.csv").read_text().splitlines()
    assert len(csv_lines) == 81 and csv_lines[0].startswith("rank,index,lt_mia_score,lt_mia_logit")
    record = json.loads((audited / "audit.json").read_text())
    assert record["texts"] == {
        "read": 80,
        "scored": 80,
        "labelled": True,
        "skipped_empty": 0,
        "skipped": [],
        "truncated": 21,
    }
    assert record["reference_adapters_disabled"] is False and "not calibrated" in record["score_note"]


def test_explanations_cover_every_token_of_the_top_texts(audited):
    table = json.loads((audited / "scores.json").read_text())
    explanations = json.loads((audited / "explanations.json").read_text())
    assert len(explanations) == 4
    for explanation, entry in zip(explanations, table, strict=False):
        tokens, attribution = explanation["tokens"], explanation["attribution"]
        assert len(tokens) == len(attribution) == len(explanation["logprob_gain"]) <= 128
        assert attribution[0] is None and all(isinstance(a, float) for a in attribution[1:])
        assert tokens[-1] == "<|endoftext|>"  # SPEC §2: every sequence ends in EOS
        assert "".join(tokens[:-1]).strip() in entry["text"]


def test_occlusion_of_a_logistic_classifier_is_each_positions_linear_term():
    """For logistic regression on the flattened input, hiding position t removes exactly w_t . x_t."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(32, 6, 21, generator=generator)  # k = 1: D = 7k + 14 = 21, L = 6
    mask = torch.ones(32, 6, dtype=torch.bool)
    mask[:, 4:] = False
    labels = np.arange(32) % 2
    source = ArraySource(features, mask, labels, split=["train"] * 24 + ["val"] * 8)
    options = dict(epochs=1, warmup_epochs=0, batch_size=8, micro_batch_size=8)
    classifier = LTMIA("logistic", **options).fit(source)
    weights = classifier.model_.linear.weight.detach().view(6, 21)
    row, row_mask = features[3], mask[3]
    expected = (weights * row).sum(1) * row_mask
    assert np.allclose(occlusion(classifier, row, row_mask), expected.numpy(), atol=1e-5)


MARK = "<b>x"  # markup in every user-controlled value of a report (no "/": a target path ends in it)


class _Tags(HTMLParser):
    """The elements of a page, and its text per section id (entities decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: dict[str, str] = {}
        self.section = "head"

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self.section = dict(attrs).get("id", self.section) if tag == "section" else self.section
        self.text[self.section] = self.text.get(self.section, "") + " ".join(v or "" for _, v in attrs)

    def handle_data(self, data: str) -> None:
        self.text[self.section] = self.text.get(self.section, "") + data


def test_report_autoescapes_markup_wherever_a_value_is_shown(tmp_path):
    """A hand-made audit whose every text, name and token holds ``<b>x``: the page shows it in every
    section as text and holds no <b> element (nor the <script> of a hostile text) anywhere."""
    from ltmia.audit.explain import Explanation
    from ltmia.audit.html import render
    from ltmia.audit.run import AuditResult

    hostile = f"{MARK} <script>alert('x')</script> \"quoted\""
    table = [
        {
            "rank": r,
            "index": r - 1,
            "lt_mia_score": 1 - r / 10,
            "lt_mia_logit": 2.0 - r,
            "p_lt_mia": r / 20,
            "q_value": r / 10,
            "selected": r == 1,
            "label": -1,
            "flags": [MARK],
            "text": f"{hostile} {r}",
        }
        for r in (1, 2, 3)
    ]
    found = {
        "selected": MARK,
        "verdict": MARK,
        "selection": {"attack": "lt_mia", "score_threshold": None},
        "non_members": 20,
        "smallest_p": 1 / 21,
        "candidates_also_in_non_members": 0,
        "assumptions": MARK,
        "set_test": {
            "attacks": {
                "lt_mia": {"auc": 0.5, "auc_ci": [0.4, 0.6], "p_value": 0.5, "p_holm": 1.0, "n_needed": None}
            },
            "method": MARK,
            "alpha": 0.05,
            "power": 0.8,
        },
        "selections_by_attack": {"lt_mia": {"n_selected": 0}},
        "shift_check": {
            "shift_detected": False,
            **{
                name: {"mean_candidates": 1.0, "mean_non_members": 1.0, "auc": 0.5, "p_holm": 1.0}
                for name in ("reference_loss", "tokens")
            },
        },
    }
    record = {
        "target": f"/models/{MARK}",
        "reference": MARK,
        "reference_adapters_disabled": False,
        "classifier": {"path": MARK, "variant": MARK},
        "score_note": MARK,
        "seconds": 0.1,
        "texts": {"read": 3, "scored": 3, "skipped_empty": 0, "labelled": False},
        "evidence": found,
    }
    explanation = Explanation(0, [MARK, hostile], [None, 0.5], [None, 1.0])
    evidence = SimpleNamespace(non_member_scores={"lt_mia": np.zeros(20)})
    result = AuditResult(tmp_path, table, {}, [explanation], None, record, evidence)
    page = render(result)
    parsed = _Tags()
    parsed.feed(page)
    assert "b" not in parsed.tags and "script" not in parsed.tags
    assert "&lt;b&gt;x" in page and "&lt;script&gt;alert(&#39;x&#39;)" in page
    shown = ["head", "evidence", "summary", "reading-scores", "top-texts", "scores", "settings"]
    assert [section for section in parsed.text if MARK in parsed.text[section]] == shown
    assert parsed.text["top-texts"].count(MARK) == 3  # the flag and both tokens
    assert parsed.text["scores"].count(MARK) == 6  # each row's flag and text


def test_report_renders_in_headless_chromium(audited, tmp_path):
    """Open report.html the way a person would: it loads offline, logs no errors, shows every section."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is needed for this test: make install (apt package chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto((audited / "report.html").as_uri())
        sections = [node.get_attribute("id") for node in page.query_selector_all("section")]
        images = page.eval_on_selector_all("img", "nodes => nodes.map(n => n.naturalWidth)")
        heat_spans = page.locator("#top-texts .tokens span").count()
        score_rows = page.locator("#scores tr").count()
        note = page.inner_text("#reading-scores")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert requests == [(audited / "report.html").as_uri()]  # self-contained: nothing else fetched
    assert sections == [
        "summary",
        "reading-scores",
        "distribution",
        "metrics",
        "top-texts",
        "scores",
        "settings",
    ]
    assert len(images) == 2 and all(width > 100 for width in images)  # histogram and ROC decoded
    assert heat_spans > 20 and score_rows == 81 and "not calibrated" in note
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_an_interrupted_audit_resumes_to_the_same_scores(tmp_path, target, splits):
    tokenizer = load_tokenizer(str(target))
    found = candidates(splits.members[:20] + splits.non_members[:20], tokenizer)
    settings = AuditSettings(shard_size=8, batch_size=4, explain=1)

    def crash_after_two_shards(done: int, total: int) -> None:
        if done > 16:  # during the third shard: two are on disk
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        audit(str(target), found, tmp_path / "a", settings=settings, on_texts=crash_after_two_shards)
    finished = sorted(p.name for p in (tmp_path / "a" / "store.partial").glob("shard-*"))
    assert finished == ["shard-00000.safetensors", "shard-00001.safetensors"]
    done: list[int] = []
    resumed = audit(
        str(target), found, tmp_path / "a", settings=settings, on_texts=lambda d, t: done.append(d)
    )
    assert done[:3] == [8, 16, 20]  # two shards reported whole, not re-extracted 4 texts at a time
    fresh = audit(str(target), found, tmp_path / "b", settings=settings)
    assert resumed.table == fresh.table
    store_files = lambda out: {  # noqa: E731 (ltmia's checksum cache records modification times)
        p.name: p.read_bytes() for p in (out / "store").iterdir() if p.name != CHECKED
    }
    assert store_files(tmp_path / "a") == store_files(tmp_path / "b")


@pytest.mark.slow
def test_lora_target_audits_against_its_base_without_a_second_copy(tmp_path, tiny_base, splits, monkeypatch):
    lora = finetune(
        str(tiny_base), splits, tmp_path / "lora", Recipe(epochs=1, batch_size=8, lr=3e-3, lora=True)
    )
    tokenizer = load_tokenizer(str(lora))
    found = candidates(splits.members[:6] + splits.non_members[:6], tokenizer)
    loaded: list[str] = []  # every causal LM read from disk, wherever ltmia loads it
    from_pretrained = AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, spec, *args, **kwargs):
        loaded.append(str(spec))
        return from_pretrained(cls, spec, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    result = audit(str(lora), found, tmp_path / "out", settings=AuditSettings(explain=0))
    assert loaded == [str(tiny_base)]  # the base once: the reference is it with its adapters disabled
    assert result.record["reference"] == str(tiny_base) and result.record["reference_adapters_disabled"]
    assert len(result.table) == 12


# --- bad input -----------------------------------------------------------------------------------------


def test_empty_and_whitespace_texts_are_skipped_and_counted(tokenizer):
    raw = ["", "   ", "A perfectly ordinary sentence that is long enough to be a real candidate.", "\t"]
    found = candidates(raw, tokenizer)
    assert found.texts == [raw[2]] and found.index == [2] and found.skipped == [0, 1, 3]
    assert found.flag_counts() == {"skipped_empty": 3}
    with pytest.raises(InputError, match="all 2 texts are empty or whitespace"):
        candidates(["", " "], tokenizer)
    with pytest.raises(InputError, match="all one class; metrics need members and non-members"):
        candidates(raw, tokenizer, labels=[0, 1, 1, 0])  # the only scored text is a member


def test_short_long_and_duplicate_texts_are_scored_but_flagged(tokenizer, docstrings):
    long_text = " ".join(docstrings[:20])
    ordinary = next(text for text in docstrings if 80 < len(text) < 200)
    raw = ["Too short to have been used.", long_text, long_text, ordinary]
    found = candidates(raw, tokenizer, labels=[1, 0, 0, 1])
    assert found.texts == raw and found.labels == [1, 0, 0, 1]
    assert found.flags == [["short"], ["truncated"], ["truncated", "duplicate"], []]


def test_empty_file_non_utf8_and_bad_labels_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(
        "caf\xe9 au lait, a text written in Latin-1 rather than UTF-8 encoding".encode("latin-1")
    )
    cases = [
        (lambda: read_texts(empty), "empty.txt is empty"),
        (lambda: read_texts(latin1), "is not UTF-8: byte 0xe9 at offset 3; re-encode it"),
        (lambda: read_texts("-", stdin=io.BytesIO(b"  \n")), "stdin is empty"),
        (lambda: read_texts(tmp_path / "missing.txt"), "no such file"),
        (lambda: read_texts(tmp_path / "x.docx"), "no such file"),
        (lambda: read_texts("-", fmt="parquet", stdin=io.BytesIO(b"x")), "cannot read 'parquet' from stdin"),
    ]
    labels = tmp_path / "labels.txt"
    labels.write_text("1\n0\nmaybe\n")
    cases += [
        (lambda: read_labels(labels, 3), "label 'maybe' is not 1/0"),
        (lambda: read_labels(tmp_path / "none.txt", 3), "no such labels file"),
    ]
    labels2 = tmp_path / "labels2.txt"
    labels2.write_text("1\n0\n")
    cases.append((lambda: read_labels(labels2, 3), "has 2 labels but 3 texts were read"))
    for call, message in cases:
        with pytest.raises(InputError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


def test_stdin_and_table_files_are_read_in_order(tmp_path):
    piped = io.BytesIO(b"first text\nsecond text\n\nthird\n")
    assert read_texts("-", stdin=piped) == ["first text\nsecond text", "third"]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"body": "one"}\n{"body": "two"}\n')
    assert read_texts(jsonl, column="body") == ["one", "two"]


def audit_error(target, texts, out, **kwargs) -> str:
    with pytest.raises((InputError, OutputExistsError)) as error:
        tokenizer = load_tokenizer(str(target)) if Path(target, "config.json").exists() else None
        raw = read_texts(texts)
        found = candidates(raw, tokenizer) if tokenizer is not None else None
        audit(str(target), found, out, tokenizer=tokenizer, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_target_and_reference_with_different_tokenizers_are_refused(tmp_path, target, texts_file, docstrings):
    other_tokenizer = train_tokenizer(docstrings[::-1], vocab_size=400)
    other = save_base(other_tokenizer, tmp_path / "other-base", hidden=32, layers=1)
    message = audit_error(target, texts_file[0], tmp_path / "out", reference=str(other))
    assert "target and reference tokenizers differ" in message
    assert not (tmp_path / "out" / "store").exists()


def test_a_directory_that_is_not_a_model_is_refused(tmp_path, texts_file):
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="is not a model directory") as error:
        load_tokenizer(str(tmp_path / "not-a-model"))
    assert "\n" not in str(error.value)
    result = CliRunner().invoke(
        app, ["audit", "--target", str(tmp_path / "not-a-model"), "--texts", str(texts_file[0])]
    )
    assert result.exit_code != 0 and "is not a model directory" in str(result.exception)


def test_a_classifier_of_another_feature_layout_is_refused_before_extraction(tmp_path, target, texts_file):
    foreign = tmp_path / "foreign"
    shutil.copytree(shipped_dir(), foreign)
    record = json.loads((foreign / "classifier.json").read_text())
    record["feature_layout_version"] += 1
    (foreign / "classifier.json").write_text(json.dumps(record))
    message = audit_error(target, texts_file[0], tmp_path / "out", settings=AuditSettings(classifier=foreign))
    assert f"reads feature layout v{record['feature_layout_version']}" in message
    assert not (tmp_path / "out" / "store").exists()


def test_remote_code_models_are_refused_unless_trusted(tmp_path, target, texts_file):
    remote = tmp_path / "remote"
    shutil.copytree(target, remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (remote / "config.json").write_text(json.dumps(config))
    manifest = read_manifest(remote)  # re-recorded, as if ltmia had written this config: the check is on code
    write_manifest(remote, {key: value for key, value in manifest.items() if key != "files"})
    args = ["audit", "--target", str(remote), "--texts", str(texts_file[0]), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "declares custom code (auto_map); review it, then pass --trust-remote-code" in str(
        result.exception
    )


def test_an_output_directory_that_is_not_an_audit_is_refused(tmp_path, target, texts_file):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    message = audit_error(target, texts_file[0], out)
    assert "not an earlier output of ltmia audit" in message and "choose another --out" in message
    assert (out / "thesis.tex").read_text() == "precious"
    (out / "store").mkdir()  # a folder that happens to share the name of the audit's store is not one
    (out / "store" / "notes.txt").write_text("mine")
    assert "not an earlier output of ltmia audit" in audit_error(target, texts_file[0], out)
    assert sorted(p.name for p in out.rglob("*")) == ["notes.txt", "store", "thesis.tex"]


def test_cli_audit_reads_texts_from_stdin(tmp_path, target, splits):
    texts = [*splits.members[:3], "   ", *splits.non_members[:3]]
    piped = "\n".join(json.dumps({"text": text}) for text in texts) + "\n"
    out = tmp_path / "out"
    args = ["audit", "--target", str(target), "--texts", "-", "--format", "jsonl", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--explain", "0"], input=piped)
    assert result.exit_code == 0, result.output
    assert "6 texts scored, 1 empty skipped" in " ".join(result.output.split())
    table = json.loads((out / "scores.json").read_text())
    assert sorted(entry["index"] for entry in table) == [0, 1, 2, 4, 5, 6]
    assert all(entry["label"] == -1 for entry in table) and not (out / "metrics.json").exists()


# --- known non-members: p-values, FDR selection, set-level verdict --------------------------------------


NON_MEMBER_GAPS = (3, 10, 20)
"""Input rows of the known non-members without text (the readers' "" placeholders)."""


@pytest.fixture(scope="module")
def evidence_audit(tmp_path_factory, target, splits) -> tuple[Path, str]:
    """``ltmia audit --non-members``: 40 members and 10 non-members as candidates; 30 known non-members, in
    33 rows: rows 3, 10 and 20 have no text (null, the key missing, whitespace) and are skipped."""
    folder = tmp_path_factory.mktemp("evidence")
    (folder / "candidates.txt").write_text("\n".join(splits.members + splits.non_members[:10]) + "\n")
    rows = [{"text": text} for text in splits.non_members[10:]]
    for position, placeholder in zip(NON_MEMBER_GAPS, ({"text": None}, {}, {"text": "   "}), strict=True):
        rows.insert(position, placeholder)
    (folder / "known.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    out = folder / "out"
    args = ["audit", "--target", str(target), "--texts", str(folder / "candidates.txt")]
    args += ["--non-members", str(folder / "known.jsonl"), "--out", str(out), "--explain", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, " ".join(result.output.split())


def test_non_members_give_p_values_a_selection_and_a_verdict(evidence_audit):
    out, printed = evidence_audit
    record = json.loads((out / "audit.json").read_text())
    assert list(record)[:2] == ["artefact", "evidence"]  # the evidence comes first
    found = record["evidence"]
    assert found["candidates"] == 50 and found["non_members"] == 30
    assert found["smallest_p"] == pytest.approx(1 / 31)
    assert found["set_test"]["reject"] and found["verdict"].startswith("member-like")
    attacks = {"loss", "zlib", "min_k", "min_k_pp", "ref_loss", "wbc", "ez_mia", "lt_mia"}
    assert set(found["set_test"]["attacks"]) == attacks
    assert {"reference_loss", "tokens", "shift_detected"} <= set(found["shift_check"])
    assert "same distribution" in found["assumptions"]
    assert found["selected"] in printed and "set-level verdict: member-like" in printed

    table = json.loads((out / "scores.json").read_text())
    known = json.loads((out / "non_members.json").read_text())
    assert len(table) == 50 and len(known) == 30
    # the rows without text are skipped, counted and listed, never scored as an empty text; every scored
    # non-member keeps its input position
    assert [entry["index"] for entry in known] == [i for i in range(33) if i not in NON_MEMBER_GAPS]
    assert all(entry["text"].strip() for entry in known)
    accounted = found["non_member_texts"]
    assert accounted["read"] == 33 and accounted["scored"] == 30
    assert accounted["skipped"] == list(NON_MEMBER_GAPS) and accounted["skipped_empty"] == 3
    assert "known non-members: 30 scored; 3 rows without text skipped (input #3, #10, #20)" in printed
    assert "3 rows without text skipped (input #3, #10, #20)" in (out / "report.html").read_text()
    # p-values by hand from the two score lists: (1 + #{non-member score >= s}) / 31
    for entry in table[:5] + table[-5:]:
        at_least = sum(other["loss"] >= entry["loss"] for other in known)
        assert entry["p_loss"] == pytest.approx((1 + at_least) / 31)
    selection = found["selection"]
    assert selection["attack"] == "lt_mia" and selection["rule"] == "fdr" and selection["level"] == 0.05
    assert sum(entry["selected"] for entry in table) == selection["n_selected"]
    assert all(entry["selected"] == (entry["q_value"] <= 0.05) for entry in table)
    assert selection["n_selected"] == 0 and "BH selects only if at least 33 candidates" in found["selected"]

    page = (out / "report.html").read_text()
    assert page.index('id="evidence"') < page.index('id="summary"')
    assert html.escape(found["verdict"], quote=True) in page and "known non-members" in page


def test_a_selection_at_a_false_positive_rate_reports_its_threshold(evidence_audit):
    """The same audit at FPR 0.1: the store is reused; selected iff p <= 0.1 iff the score passes the
    threshold, i.e. at most floor(0.1 x 31) - 1 = 2 known non-members score at or above it."""
    out, _ = evidence_audit
    args = ["audit", "--target", str(json.loads((out / "audit.json").read_text())["target"])]
    args += ["--texts", str(out.parent / "candidates.txt"), "--non-members", str(out.parent / "known.jsonl")]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--explain", "0", "--fpr", "0.1"])
    assert result.exit_code == 0, result.output
    selection = json.loads((out / "audit.json").read_text())["evidence"]["selection"]
    table = json.loads((out / "scores.json").read_text())
    known = json.loads((out / "non_members.json").read_text())
    assert selection["rule"] == "fpr" and selection["p_cutoff"] == 0.1 and selection["n_selected"] > 0
    threshold = selection["score_threshold"]
    assert sum(other["lt_mia"] >= threshold for other in known) == 3  # the third largest: 2 are above it
    assert all(entry["selected"] == (entry["lt_mia_logit"] > threshold) for entry in table)
    assert all(entry["selected"] == (entry["p_lt_mia"] <= 0.1) for entry in table)


def test_bad_non_members_input_is_a_one_line_error(tmp_path, target, texts_file, splits):
    few = tmp_path / "few.txt"
    few.write_text("\n".join(splits.non_members[:5]) + "\n")
    gaps = tmp_path / "gaps.jsonl"  # 19 texts and 6 rows without: placeholders never count as non-members
    rows = [{"text": text} for text in splits.non_members[:19]] + [{"text": None}] * 6
    gaps.write_text("\n".join(map(json.dumps, rows)) + "\n")
    base = ["audit", "--target", str(target), "--texts", str(texts_file[0]), "--out", str(tmp_path / "o")]
    cases = [
        (["--non-members", str(tmp_path / "missing.txt")], "missing.txt: no such file"),
        (["--non-members", str(few)], "give at least 20 known non-members"),
        (["--non-members", str(gaps)], "gaps.jsonl has 19 non-empty texts in 25 rows; give at least 20"),
        (["--non-members", str(few), "--fdr", "0.1", "--fpr", "0.01"], "give --fdr or --fpr, not both"),
        (["--fdr", "0.1"], "weigh candidates against --non-members; give it"),
        (["--non-members", str(few), "--fdr", "5"], "--fdr must be between 0 and 1"),
        (["--non-members", str(few), "--attack", "nope"], "unknown attack 'nope'"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(app, [*base, *extra])
        assert result.exit_code != 0 and message in str(result.exception), (extra, result.output)
        assert "\n" not in str(result.exception)
    both = ["audit", "--target", str(target), "--texts", "-", "--non-members", "-"]
    result = CliRunner().invoke(app, both, input="a text\n")
    assert "cannot both be - (stdin)" in str(result.exception)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_classifier_with_score_inputs_audits_and_explains(tmp_path, target, tiny_base, splits):
    """A classifier that also reads the baseline scores (ltmia.classifier.score_inputs) ranks an audit by
    the logits it gives the audit's own store, and its top texts are explained (the scores kept whole)."""
    from ltmia.extract import build_store
    from ltmia.models import load_causal_lm
    from ltmia.store import Rows, Store, StoreSettings

    tokenizer = load_tokenizer(str(target))
    texts = splits.members[:16] + splits.non_members[:16]
    rows = Rows(texts, [1] * 16 + [0] * 16, (["train"] * 12 + ["val"] * 4) * 2)
    models = load_causal_lm(str(target)), load_causal_lm(str(tiny_base))
    store = Store(build_store(*models, tokenizer, rows, tmp_path / "s", StoreSettings(shard_size=16)))
    sizes = dict(d_model=32, heads=4, layers=1, ff=64, epochs=1, warmup_epochs=0, batch_size=8)
    LTMIA(**sizes, micro_batch_size=8, score_inputs=["ez_mia", "wbc"]).fit(store).save(tmp_path / "clf")
    found = candidates(splits.members[16:24] + splits.non_members[16:24], tokenizer)
    settings = AuditSettings(classifier=tmp_path / "clf", explain=2)
    result = audit(str(target), found, tmp_path / "a", settings=settings)
    expected = LTMIA.load(tmp_path / "clf").score(Store(tmp_path / "a" / "store"), split=None)
    by_index = {entry["index"]: entry["lt_mia_logit"] for entry in result.table}
    np.testing.assert_allclose([by_index[i] for i in range(16)], expected, atol=1e-5)
    assert len(result.explanations) == 2
    assert all(len(e.attribution) == len(e.tokens) for e in result.explanations)
