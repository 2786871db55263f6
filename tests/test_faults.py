"""Fault injection (issue 16): damaged files of every artefact kind, mismatched models, concurrent and dead
writers, outputs that are not ltmia's, reused outputs of other settings, hostile texts on the terminal and
NaN scores. Each gives one line naming the fix, or a correct, fully accounted result; nothing that ltmia
did not write is deleted. Kills during every stage kind: ``test_faults_kill.py``; text readers:
``test_faults_inputs.py``."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ltmia.artefacts import CHECKED, MANIFEST, MARKER, building, write_manifest
from ltmia.classifier import LTMIA
from ltmia.cli import main
from ltmia.corpora import corpus_texts, get_corpus
from ltmia.data import make_splits
from ltmia.errors import BusyError, DamagedError, InputError, LtmiaError, OutputExistsError
from ltmia.extract import extract_target
from ltmia.finetune import Recipe, finetune
from ltmia.models import load_causal_lm, load_tokenizer
from ltmia.store import Store, StoreSettings
from ltmia.zoo.architectures import ZooSize, build_model

FAST = dict(epochs=1, batch_size=8, lr=3e-3)
SETTINGS = StoreSettings(shard_size=16, batch_size=8)
TINY_CLASSIFIER = dict(
    epochs=1, warmup_epochs=0, d_model=16, heads=2, layers=1, ff=32, batch_size=16, micro_batch_size=16
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, docstrings) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "texts.txt"
    path.write_text("\n".join(text.replace("\n", " ") for text in docstrings[:120]))
    return path


@pytest.fixture(scope="module")
def splits(corpus):
    return make_splits(
        corpus_texts(get_corpus(str(corpus))), 40, 4, 40, seed=0, source={"corpus": str(corpus)}
    )


@pytest.fixture(scope="module")
def target(tmp_path_factory, tiny_base, splits) -> Path:
    return finetune(str(tiny_base), splits, tmp_path_factory.mktemp("t") / "target", Recipe(**FAST))


@pytest.fixture(scope="module")
def store(tmp_path_factory, target) -> Path:
    return extract_target(target, tmp_path_factory.mktemp("s") / "store", SETTINGS)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, store) -> Path:
    return LTMIA(**TINY_CLASSIFIER).fit([store]).save(tmp_path_factory.mktemp("c") / "clf")


def copy(source: Path, tmp_path: Path, name: str = "copy") -> Path:
    """A copy with the same modification times (as ``cp -a``): its checksum cache stays valid."""
    return Path(shutil.copytree(source, tmp_path / name))


def flip(path: Path, offset: int, keep_mtime: bool = False) -> None:
    """Flip the bits of one byte; ``keep_mtime``: as a damage that leaves the time stamp alone."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The real entry point (``main``: its error handling included), in this process."""
    monkeypatch.setattr(sys, "argv", ["ltmia", *args])
    monkeypatch.delenv("LTMIA_DEBUG", raising=False)
    monkeypatch.delenv("LTMIA_VERIFY", raising=False)
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


# --- damaged files, every artefact kind ------------------------------------------------------------------


def test_target_weights_truncated_or_header_corrupted_are_one_line(tmp_path, target):
    truncated = copy(target, tmp_path, "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(
        DamagedError, match=r"truncated or replaced\); the model is damaged: fine-tune"
    ) as error:
        load_causal_lm(str(truncated))
    one_line(error)
    header = copy(target, tmp_path, "header")
    flip(header / "model.safetensors", 3)
    with pytest.raises(DamagedError, match="does not match its checksum") as error:
        extract_target(header, tmp_path / "store", SETTINGS)
    one_line(error)
    assert not (tmp_path / "store").exists() and not (tmp_path / "store.partial").exists()


def test_a_flipped_byte_with_its_time_stamp_kept_is_caught_by_verify(tmp_path, target, monkeypatch):
    quiet = copy(target, tmp_path)
    flip(quiet / "model.safetensors", (quiet / "model.safetensors").stat().st_size - 5, keep_mtime=True)
    load_causal_lm(str(quiet))  # the fast path trusts an unchanged (size, mtime): the documented limit
    monkeypatch.setenv("LTMIA_VERIFY", "1")
    with pytest.raises(DamagedError, match="does not match its checksum"):
        load_causal_lm(str(quiet))


def test_targets_without_recorded_checksums_still_load_and_damage_is_one_line(tmp_path, target):
    """A target written before checksums existed (the running study's) loads; damaged weights in one are
    still one line, from the loader."""
    old = copy(target, tmp_path, "old")
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["files"]
    (old / MANIFEST).write_text(json.dumps(manifest))
    (old / CHECKED).unlink()
    assert load_causal_lm(str(old)).config.model_type == "llama"
    weights = old / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(LtmiaError, match="cannot load the weights") as error:
        load_causal_lm(str(old))
    one_line(error)
    weights.write_bytes(b"\xff" * 64 + b"{}")
    with pytest.raises(LtmiaError, match="cannot load the weights") as error:
        load_causal_lm(str(old))
    one_line(error)


def test_target_manifest_and_splits_record_damage(tmp_path, target):
    for name in (MANIFEST, "splits.json"):
        damaged = copy(target, tmp_path, name)
        (damaged / name).write_text((damaged / name).read_text()[:-20])
        with pytest.raises(DamagedError) as error:
            extract_target(damaged, tmp_path / f"store-{name}", SETTINGS)
        assert name in one_line(error)


class Payload:
    """A pickle that would run a command when unpickled."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def test_a_malicious_pickle_is_refused_in_one_line_and_never_run(tmp_path, tiny_base):
    model = copy(tiny_base, tmp_path, "pickled")
    (model / "model.safetensors").unlink()
    sentinel = tmp_path / "pwned"
    torch.save({"model.embed_tokens.weight": Payload(sentinel)}, model / "pytorch_model.bin")
    with pytest.raises(LtmiaError, match="pickled weights") as error:
        load_causal_lm(str(model))
    one_line(error)
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "truncated or replaced"),
        ("header", "does not match its checksum"),
        ("zero", "does not match its checksum"),
        ("labels", "rows.json does not match its checksum"),
        ("manifest", "manifest.json is not valid JSON"),
    ],
)
def test_damaged_store_files_are_one_line(tmp_path, store, damage, message):
    damaged = copy(store, tmp_path)
    shard = damaged / "shard-00002.safetensors"
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:-1])
    elif damage == "header":
        flip(shard, 10)
    elif damage == "zero":
        shard.write_bytes(bytes(shard.stat().st_size))
    elif damage == "labels":  # the case: labels swapped, same size, AUCs inverted
        rows = damaged / "rows.json"
        rows.write_text(rows.read_text().replace('"label": [\n    1,\n    0', '"label": [\n    0,\n    1'))
    else:
        (damaged / MANIFEST).write_text("{ not json")
    with pytest.raises(DamagedError, match=message) as error:
        Store(damaged).stats()
    one_line(error)


def test_a_store_shard_damaged_under_an_unchanged_time_stamp_is_one_line_when_read(tmp_path, store):
    damaged = copy(store, tmp_path)
    shard = damaged / "shard-00001.safetensors"
    stat = shard.stat()
    shard.write_bytes(bytes(stat.st_size))
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    opened = Store(damaged)  # fast path: nothing changed as far as (size, mtime) tell
    with pytest.raises(DamagedError, match=r"shard-00001\.safetensors cannot be read") as error:
        opened.stats()
    one_line(error)
    with pytest.raises(DamagedError, match="does not match its checksum"):
        opened.verify()


def test_stores_from_before_checksum_caches_are_hashed_once_then_trusted(tmp_path, store):
    old = copy(store, tmp_path)
    manifest = json.loads((old / MANIFEST).read_text())
    for entry in [manifest["rows_file"], *manifest["shards"]]:
        del entry["bytes"]  # as the first stores recorded them
    (old / MANIFEST).write_text(json.dumps(manifest))
    (old / CHECKED).unlink()
    assert Store(old).n == Store(store).n and (old / CHECKED).exists()
    shard = old / "shard-00000.safetensors"
    shard.write_bytes(bytes(shard.stat().st_size))
    with pytest.raises(DamagedError, match="does not match its checksum"):
        Store(old)


def test_damaged_classifier_files_are_one_line(tmp_path, classifier):
    truncated = copy(classifier, tmp_path, "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(DamagedError, match=r"truncated or replaced\); the classifier is damaged") as error:
        LTMIA.load(truncated)
    one_line(error)
    record = copy(classifier, tmp_path, "record")
    (record / "classifier.json").write_text("[1, 2")
    with pytest.raises(DamagedError, match=r"classifier\.json is not valid JSON") as error:
        LTMIA.load(record)
    one_line(error)
    old = copy(classifier, tmp_path, "old")  # a checkpoint from before checksums, then damaged
    saved = json.loads((old / "classifier.json").read_text())
    del saved["files"]
    (old / "classifier.json").write_text(json.dumps(saved))
    (old / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(DamagedError, match="damaged classifier checkpoint") as error:
        LTMIA.load(old)
    one_line(error)


def test_a_damaged_zoo_model_names_its_fix(tmp_path, tiny_base):
    zoo_model = copy(tiny_base, tmp_path, "llama")
    write_manifest(zoo_model, {"artefact": "ltmia-zoo-model", "architecture": "llama"})
    assert load_causal_lm(str(zoo_model)).config.model_type == "llama"
    flip(zoo_model / "tokenizer.json", 5)
    with pytest.raises(DamagedError, match=r"tokenizer\.json does not match .* build the zoo again") as error:
        load_tokenizer(str(zoo_model))
    one_line(error)


def test_cli_baselines_and_evaluate_on_a_damaged_store_are_one_line(
    tmp_path, store, classifier, monkeypatch, capsys
):
    damaged = copy(store, tmp_path)
    shard = damaged / "shard-00004.safetensors"
    shard.write_bytes(shard.read_bytes()[:100])
    code, _, err = cli(monkeypatch, capsys, "baselines", str(damaged))
    assert_one_line_error(code, err, "shard-00004.safetensors has 100 bytes")
    code, _, err = cli(monkeypatch, capsys, "evaluate", str(damaged), "--classifier", str(classifier))
    assert_one_line_error(code, err, "extract it again")


def test_cli_verify_hashes_what_the_fast_path_trusts(tmp_path, store, monkeypatch, capsys):
    quiet = copy(store, tmp_path)
    shard = quiet / "shard-00004.safetensors"
    flip(shard, shard.stat().st_size - 3, keep_mtime=True)  # one float of the last row
    code, _, _ = cli(monkeypatch, capsys, "baselines", str(quiet))
    assert code == 0
    code, _, err = cli(monkeypatch, capsys, "baselines", str(quiet), "--verify")
    assert_one_line_error(code, err, "shard-00004.safetensors does not match its checksum")


def test_nan_scores_in_evaluate_are_one_line(tmp_path, store, classifier, monkeypatch, capsys):
    broken = LTMIA.load(classifier)
    with torch.no_grad():
        for parameter in broken.model_.parameters():
            parameter.fill_(float("nan"))
    nan_classifier = broken.save(tmp_path / "nan-clf")
    args = ["evaluate", str(store), "--classifier", str(nan_classifier), "--out", str(tmp_path / "eval")]
    code, _, err = cli(monkeypatch, capsys, *args)
    assert_one_line_error(code, err, "lt_mia gives 4 NaN or infinite scores")


# --- mismatched models -----------------------------------------------------------------------------------


def smaller_model(tokenizer, out: Path, missing: int = 10, with_tokenizer: bool = False) -> Path:
    """A llama with ``missing`` fewer token embeddings than ``tokenizer`` has tokens."""
    model = build_model(
        "llama", len(tokenizer) - missing, 0, 1, ZooSize(hidden=64, layers=2, heads=2), seed=0
    )
    model.save_pretrained(str(out))
    if with_tokenizer:
        tokenizer.save_pretrained(str(out))
    return out


@pytest.mark.parametrize("with_tokenizer", [False, True])
def test_a_smaller_reference_is_refused_never_resized(tmp_path, target, tokenizer, with_tokenizer):
    reference = smaller_model(tokenizer, tmp_path / "smaller", with_tokenizer=with_tokenizer)
    with pytest.raises(InputError, match="models are never resized to fit") as error:
        extract_target(target, tmp_path / "store", SETTINGS, reference=str(reference))
    assert "502 token embeddings but the tokenizer has 512 tokens" in one_line(error)
    assert not (tmp_path / "store").exists() and not (tmp_path / "store.partial").exists()


def test_a_base_smaller_than_its_tokenizer_is_refused_before_fine_tuning(tmp_path, tokenizer, splits):
    base = smaller_model(tokenizer, tmp_path / "base", with_tokenizer=True)
    with pytest.raises(InputError, match="never resized"):
        finetune(str(base), splits, tmp_path / "target", Recipe(**FAST))
    assert not (tmp_path / "target").exists()


def test_the_one_eos_ltmia_adds_is_the_only_resize(tmp_path, tiny_base):
    no_eos = copy(tiny_base, tmp_path, "no-eos")
    config = json.loads((no_eos / "tokenizer_config.json").read_text())
    for key in ("eos_token", "bos_token", "pad_token"):
        config.pop(key, None)
    (no_eos / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = load_tokenizer(str(no_eos))
    assert tokenizer.eos_token == "</s>" and len(tokenizer) == 513
    model = load_causal_lm(str(no_eos), tokenizer=tokenizer)
    assert model.get_input_embeddings().num_embeddings == 513


# --- writers: concurrent, dead, foreign ------------------------------------------------------------------

HOLDER = """
import sys
from ltmia.artefacts import building
with building(sys.argv[1]):
    print("holding", flush=True)
    sys.stdin.read()
"""


def test_a_second_writer_is_refused_in_one_line_while_another_process_writes(tmp_path, target):
    out = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        with pytest.raises(BusyError, match=f"being written by another ltmia process \\(pid {holder.pid}"):
            extract_target(target, out, SETTINGS)
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "store.partial" / MARKER).exists()  # a dead writer's scratch: ltmia's, so replaced
    with building(out, what="store") as scratch:
        assert not any(scratch.glob("*.json"))
    assert out.exists() and not (tmp_path / "store.partial").exists()


def test_cli_extract_into_an_output_being_written_is_one_line(tmp_path, target, monkeypatch, capsys):
    out = tmp_path / "store"
    with building(out):
        code, _, err = cli(monkeypatch, capsys, "extract", "--target", str(target), "--out", str(out))
    assert_one_line_error(code, err, "is being written by another ltmia process")
    assert not any(out.iterdir())  # what the other writer made, untouched


def test_a_second_fine_tune_into_the_same_output_is_refused(tmp_path, tiny_base, splits):
    with building(tmp_path / "target"), pytest.raises(BusyError, match="being written by another") as error:
        finetune(str(tiny_base), splits, tmp_path / "target", Recipe(**FAST))
    one_line(error)


@pytest.mark.parametrize("kind", ["target", "store", "classifier"])
def test_a_scratch_directory_ltmia_did_not_make_is_refused_never_deleted(
    tmp_path, tiny_base, splits, target, classifier, kind
):
    out = tmp_path / kind
    partial = tmp_path / f"{kind}.partial"
    partial.mkdir()
    (partial / "notes.txt").write_text("the user's own file")
    os.utime(partial, (0, 0))  # not a writer between its mkdir and its marker
    with pytest.raises(OutputExistsError, match=f"{kind}.partial exists but ltmia did not make it") as error:
        if kind == "target":
            finetune(str(tiny_base), splits, out, Recipe(**FAST))
        elif kind == "store":
            extract_target(target, out, SETTINGS)
        else:
            LTMIA.load(classifier).save(out)
    one_line(error)
    assert (partial / "notes.txt").read_text() == "the user's own file" and not out.exists()


@pytest.mark.slow
def test_a_dead_runs_scratch_directory_is_replaced(tmp_path, tiny_base, splits):
    partial = tmp_path / "target.partial"
    partial.mkdir()
    (partial / MARKER).write_text(json.dumps({"ltmia": "scratch directory", "run": "dead", "pid": 1}))
    (partial / "model.safetensors").write_bytes(b"half a model")
    out = finetune(str(tiny_base), splits, tmp_path / "target", Recipe(**FAST))
    assert not partial.exists() and load_causal_lm(str(out)).config.model_type == "llama"
    assert not (out / MARKER).exists() and MARKER not in json.dumps(json.loads((out / MANIFEST).read_text()))


# --- finished outputs are reused only for the same inputs ------------------------------------------------


def test_a_finished_target_of_other_inputs_is_refused_naming_them(
    tmp_path, tiny_base, target, splits, corpus
):
    other_splits = make_splits(
        corpus_texts(get_corpus(str(corpus))), 20, 4, 20, seed=0, source={"corpus": str(corpus)}
    )
    other_base = copy(tiny_base, tmp_path, "other-base")
    cases = [
        (dict(recipe=Recipe(**{**FAST, "lr": 1e-3})), "recipe.lr differ"),
        (dict(recipe=Recipe(**FAST, lora=True)), "recipe.lora differ"),
        (dict(splits=other_splits), "split_fingerprint differ"),
        (dict(base=str(other_base)), "(base differ"),
    ]
    before = (target / MANIFEST).read_bytes()
    for change, message in cases:
        arguments = {"base": str(tiny_base), "splits": splits, "recipe": Recipe(**FAST), **change}
        with pytest.raises(OutputExistsError, match=message.replace("(", r"\(")) as error:
            finetune(arguments["base"], arguments["splits"], target, arguments["recipe"])
        assert "--overwrite" in one_line(error)
    assert (target / MANIFEST).read_bytes() == before
    assert finetune(str(tiny_base), splits, target, Recipe(**FAST)) == target  # same inputs: reused


def test_overwrite_replaces_a_finished_target_and_only_a_target(tmp_path, tiny_base, target, splits):
    replaced = copy(target, tmp_path, "replaced")
    finetune(str(tiny_base), splits, replaced, Recipe(**{**FAST, "lr": 1e-3}), overwrite=True)
    assert json.loads((replaced / MANIFEST).read_text())["recipe"]["lr"] == 1e-3
    assert not list(tmp_path.glob("replaced.*"))  # no scratch or old copy left beside it
    zoo_model = copy(tiny_base, tmp_path, "zoo-llama")
    write_manifest(zoo_model, {"artefact": "ltmia-zoo-model"})
    with pytest.raises(OutputExistsError, match="holds an ltmia zoo-model, not a target"):
        finetune(str(tiny_base), splits, zoo_model, Recipe(**FAST), overwrite=True)
    assert (zoo_model / "model.safetensors").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    with pytest.raises(OutputExistsError, match="is not a finished ltmia target"):
        finetune(str(tiny_base), splits, mine, Recipe(**FAST), overwrite=True)
    assert (mine / "notes.txt").read_text() == "the user's own file"


def test_cli_finetune_out_pointing_at_a_zoo_model_is_one_line(
    tmp_path, tiny_base, corpus, monkeypatch, capsys
):
    zoo_model = copy(tiny_base, tmp_path, "zoo-llama")
    write_manifest(zoo_model, {"artefact": "ltmia-zoo-model"})
    args = ["finetune", "--base", str(tiny_base), "--corpus", str(corpus), "--out", str(zoo_model)]
    code, _, err = cli(monkeypatch, capsys, *args, "--members", "20", "--val", "4", "--non-members", "20")
    assert_one_line_error(code, err, "holds an ltmia zoo-model, not a target")


def test_overwrite_replaces_a_finished_store_of_other_settings(tmp_path, target, store):
    replaced = copy(store, tmp_path)
    other = StoreSettings(shard_size=32, batch_size=8)
    with pytest.raises(OutputExistsError, match=r"shard_size differ\); choose another output directory, or"):
        extract_target(target, replaced, other)
    extract_target(target, replaced, other, overwrite=True)
    assert [shard["rows"] for shard in Store(replaced).manifest["shards"]] == [32, 32, 16]


def test_train_overwrite_replaces_only_a_classifier(tmp_path, classifier, tiny_base):
    fitted = LTMIA.load(classifier)
    existing = copy(classifier, tmp_path)
    with pytest.raises(OutputExistsError, match=r"holds a trained classifier already; .* --overwrite"):
        fitted.save(existing)
    fitted.save(existing, overwrite=True)
    assert LTMIA.load(existing).best_epoch_ == fitted.best_epoch_
    with pytest.raises(OutputExistsError, match="is not a classifier"):
        fitted.save(copy(tiny_base, tmp_path, "model"), overwrite=True)


# --- terminal output and unexpected errors ---------------------------------------------------------------

HOSTILE = [
    "<script>alert('x')</script> an <img src=x onerror=alert(1)> inside a candidate text long enough",
    "\x1b[2J\x1b[31mred text on a cleared screen\x1b[0m and \x1b]0;a new terminal title\x07 in a text",
    "a NUL \x00 byte, a bell \x07 and a bidi override \u202e in the middle of a candidate text",
    "a huge line of words " * 10_000,
    "An ordinary candidate text, long enough to be scored like every other text of this audit here.",
]


def test_cli_audit_of_hostile_texts_prints_no_control_characters(tmp_path, target, monkeypatch, capsys):
    texts = tmp_path / "hostile.jsonl"
    texts.write_text("\n".join(json.dumps({"text": text}) for text in [*HOSTILE, None]))
    out = tmp_path / "audit"
    args = ["audit", "--target", str(target), "--texts", str(texts), "--out", str(out), "--explain", "1"]
    code, printed, err = cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "\x1b" not in printed and "\x00" not in printed and "\u202e" not in printed
    assert "\\x1b" in printed  # shown, escaped
    assert "5 texts scored, 1 empty skipped (input #5)" in " ".join(printed.split())
    report = (out / "report.html").read_text()
    assert "<script>alert" not in report and "&lt;script&gt;alert" in report
    scores = json.loads((out / "scores.json").read_text())
    assert sorted(entry["text"] for entry in scores) == sorted(text.strip() for text in HOSTILE)
    assert json.loads((out / "audit.json").read_text())["texts"]["skipped"] == [5]


def test_error_messages_quoting_user_text_print_no_control_characters(tmp_path, monkeypatch, capsys):
    texts = tmp_path / "t.jsonl"
    texts.write_text(json.dumps({"\x1b[31mcolumn": "a text"}))
    code, _, err = cli(monkeypatch, capsys, "corpora", "show", str(texts))
    assert_one_line_error(code, err, "\\x1b[31mcolumn")
    assert "\x1b" not in err


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line of detail")

    monkeypatch.setattr("ltmia.corpora.get_corpus", broken)
    code, _, err = cli(monkeypatch, capsys, "corpora", "show", "fortunes")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "ZeroDivisionError: division by zero (unexpected: run again with --debug" in err
    monkeypatch.setattr(sys, "argv", ["ltmia", "corpora", "show", "fortunes", "--debug"])
    with pytest.raises(ZeroDivisionError):
        main()


def test_pickle_payload_helper_would_really_run(tmp_path):
    """The malicious-pickle test is only meaningful if its payload runs when unpickled naively."""
    sentinel = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(sentinel)))  # unpickling runs the payload: the point
    assert sentinel.exists()
