"""Outputs in the user's directories (issue 16): ltmia writes results only into a new or empty directory or
its own earlier output, removes only files it can show it wrote, and writes every file whole or not at all
(no temporary file stays behind a failed write). Fast: no model runs; scores are made up."""

from __future__ import annotations

import errno
import json
import shutil
import sys
from pathlib import Path, PosixPath
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.figure import Figure

from ltmia import evaluation as evaluation_module
from ltmia.artefacts import MARKER, OUTPUT_RECORD, claim_output, write_json, write_text
from ltmia.cli import main
from ltmia.corpora import builtin
from ltmia.errors import InputError, OutputExistsError
from ltmia.evaluation import Scored, evaluate_stores, plot_roc
from ltmia.study import report
from ltmia.study.config import parse, read_toml
from ltmia.study.report import legacy_results, write_report
from ltmia.study.stages import STAGE_FILE, Stage, plan, write_scores

MINI = Path(__file__).parent / "data" / "mini.toml"
REPO = Path(__file__).parent.parent


def made_up(name: str, n: int = 20, seed: int = 0) -> Scored:
    """n members and n non-members with two attacks' scores, the first informative."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n), np.zeros(n)].astype(np.int64)
    scores = {"lt_mia": labels + rng.normal(0, 1, 2 * n), "loss": rng.normal(0, 1, 2 * n)}
    return Scored(name, labels, scores, np.arange(2 * n))


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """The real entry point (its one-line error handling included): exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["ltmia", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- the study report's results directory ----------------------------------------------------------------


@pytest.fixture
def study(monkeypatch):
    """``study(groups)``: the miniature study's plan with its groups renamed, scored with made-up numbers
    (no stage runs: ``group_results`` and ``provenance`` are replaced)."""

    def make(names: tuple[str, ...] = ("in-distribution", "held-out")):
        raw = read_toml(str(MINI))
        raw["groups"] = dict(zip(names, raw["groups"].values(), strict=True))
        return plan(parse(raw))

    def groups(plan_, cache):
        return {name: (made_up(name, seed=i), [None]) for i, name in enumerate(plan_.config.groups)}

    monkeypatch.setattr(report, "group_results", groups)
    monkeypatch.setattr(report, "provenance", lambda *args: {"study": "mini"})
    return make


def group_names(results: Path) -> list[str]:
    return sorted(path.name for path in (results / "groups").iterdir())


def test_report_re_renders_its_own_results_and_removes_only_group_files_it_wrote(tmp_path, study):
    results = tmp_path / "results"
    write_report(study(), tmp_path / "cache", results, config_text="# mini\n")
    assert group_names(results) == sorted(
        f"{slug}{suffix}"
        for slug in ("held-out", "in-distribution")
        for suffix in (".json", ".md", "-roc.png")
    )
    record = json.loads((results / OUTPUT_RECORD).read_text())
    assert record["ltmia"] == "study results" and "groups/held-out-roc.png" in record["files"]
    assert "config.toml" in record["files"] and "config.resolved.json" in record["files"]

    (results / "notes.md").write_text("mine")  # beside ltmia's files, not in groups/: left alone
    write_report(study(("in-distribution", "renamed")), tmp_path / "cache", results)  # a group renamed
    names = group_names(results)
    assert "renamed.json" in names and not any(name.startswith("held-out") for name in names)
    assert (results / "notes.md").read_text() == "mine" and (
        results / "config.toml"
    ).read_text() == "# mini\n"
    assert set(json.loads((results / "results.json").read_text())["groups"]) == {"in-distribution", "renamed"}


def test_report_refuses_a_groups_folder_holding_a_users_file_and_deletes_nothing(tmp_path, study):
    results = tmp_path / "results"
    write_report(study(), tmp_path / "cache", results)
    (results / "groups" / "thesis.tex").write_text("precious")
    before = {path: path.read_bytes() for path in results.rglob("*") if path.is_file()}
    with pytest.raises(
        OutputExistsError, match=r"holds files ltmia did not write \(groups/thesis.tex\)"
    ) as error:
        write_report(study(("in-distribution", "renamed")), tmp_path / "cache", results)
    assert "--results" in one_line(error)
    assert {path: path.read_bytes() for path in results.rglob("*") if path.is_file()} == before


def test_report_refuses_a_directory_that_is_not_ltmia_results(tmp_path, study, monkeypatch, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(OutputExistsError, match="not an earlier output of study results") as error:
        write_report(study(), tmp_path / "cache", mine)
    one_line(error)
    evaluated = tmp_path / "evaluated"  # another command's output is not the report's either
    claim_output(evaluated, "ltmia evaluate", "fix")
    (evaluated / "x.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="holds the output of ltmia evaluate, not of study results"):
        write_report(study(), tmp_path / "cache", evaluated)
    # the CLI refuses before a single stage runs (the cache stays empty)
    code, err = cli(
        monkeypatch, capsys, "study", "run", str(MINI), "--cache", str(tmp_path / "c"), "--results", str(mine)
    )
    assert (
        code == 2 and len(err.strip().splitlines()) == 1 and "not an earlier output of study results" in err
    )
    assert not (tmp_path / "c").exists() and sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]


def test_results_of_an_ltmia_from_before_records_re_render(tmp_path, study):
    """Rule for results written without a record: ltmia's files are the ones it always writes plus, per
    group of the old ``results.json``, ``groups/<slug>.json|.md|-roc.png``; anything else refuses."""
    old = tmp_path / "old"
    write_report(study(("in-distribution", "old name")), tmp_path / "cache", old)
    (old / OUTPUT_RECORD).unlink()  # as an older ltmia left it
    (old / "groups" / "old-name.json.12345.tmp").write_text("{")  # and a write it was killed in
    assert "groups/old-name-roc.png" in legacy_results(old)
    user = Path(shutil.copytree(old, tmp_path / "user"))
    write_report(study(), tmp_path / "cache", old)
    assert not any(name.startswith("old-name") for name in group_names(old))
    assert "held-out.json" in group_names(old) and (old / OUTPUT_RECORD).is_file()

    (user / "groups" / "figure-3.png").write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match=r"figure-3\.png"):
        write_report(study(), tmp_path / "cache", user)
    assert (user / "groups" / "old-name.json").is_file() and (user / "groups" / "figure-3.png").is_file()
    assert not (user / OUTPUT_RECORD).exists()  # refused: not even recorded


@pytest.mark.parametrize(
    "results", sorted((REPO / "results").glob("*/results.json")), ids=lambda p: p.parent.name
)
def test_committed_results_are_ltmias_own_under_the_legacy_rule(results):
    """Every committed results directory re-renders: the rule takes all of its groups/ for ltmia's."""
    directory = results.parent
    files = legacy_results(directory)
    assert files is not None
    assert report.strays(directory, files, "groups") == []


# --- evaluate and baselines ------------------------------------------------------------------------------


@pytest.fixture
def fake_stores(monkeypatch, tmp_path):
    """Two "stores" (only their path is read) whose baseline scores are made up."""
    monkeypatch.setattr(evaluation_module, "baseline_scores", lambda store, split: made_up(str(store.path)))
    return [SimpleNamespace(path=tmp_path / name) for name in ("store-a", "store-b")]


def test_evaluate_writes_only_into_new_empty_or_its_own_output(tmp_path, fake_stores):
    out = tmp_path / "eval"
    evaluate_stores(fake_stores, out, split=None)
    written = sorted(path.name for path in out.iterdir())
    assert {"store-a.json", "all-stores-roc.png", "scores.json", OUTPUT_RECORD} <= set(written)
    evaluate_stores(fake_stores, out, split=None)  # its own earlier output: written again
    assert sorted(path.name for path in out.iterdir()) == written

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(
        OutputExistsError, match=r"mine is not empty and not an earlier output of ltmia evaluate"
    ) as error:
        evaluate_stores(fake_stores, mine, split=None)
    assert one_line(error).endswith("choose another --out directory")
    assert sorted(path.name for path in mine.iterdir()) == ["thesis.tex"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OutputExistsError, match="is a file, not a directory"):
        evaluate_stores(fake_stores, afile, split=None)


def test_evaluate_output_of_an_ltmia_from_before_records_is_its_own(tmp_path, fake_stores):
    out = tmp_path / "eval"
    evaluate_stores(fake_stores, out, split=None)
    (out / OUTPUT_RECORD).unlink()
    files = evaluation_module.legacy_evaluation(out)
    assert {"scores.json", "store-b.md", "all-stores.json", "all-stores-roc.png"} <= set(files)
    evaluate_stores(fake_stores, out, split=None)
    assert json.loads((out / OUTPUT_RECORD).read_text())["ltmia"] == "ltmia evaluate"
    (out / OUTPUT_RECORD).unlink()
    (out / "scores.json").write_text('{"mine": 1}')  # a scores.json that is not ltmia's: not recognised
    with pytest.raises(OutputExistsError):
        evaluate_stores(fake_stores, out, split=None)


def test_baselines_json_replaces_only_its_own_file(tmp_path, monkeypatch, capsys):
    users = tmp_path / "notes.json"
    users.write_text('{"mine": true}')
    code, err = cli(monkeypatch, capsys, "baselines", str(tmp_path / "no-store"), "--json", str(users))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is not a baselines JSON ltmia wrote; choose another --json path" in err
    assert users.read_text() == '{"mine": true}'
    own = tmp_path / "own.json"
    write_json(own, {"store": "s", "split": "test", "attacks": {}})
    code, err = cli(monkeypatch, capsys, "baselines", str(tmp_path / "no-store"), "--json", str(own))
    assert code == 2 and "baselines JSON" not in err  # accepted; the missing store is what stops it


# --- every file whole or not at all ----------------------------------------------------------------------


@pytest.fixture(params=["half-written", "rename"])
def failing_writes(request, monkeypatch):
    """Arms a full disk: every ``Path.write_text`` / ``Figure.savefig`` writes half its content, then fails
    ("half-written"); or every file is written but the rename that would put it in place fails."""
    real_write, real_save = PosixPath.write_text, Figure.savefig

    def write_half(self, data, *args, **kwargs):
        real_write(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    def save_half(self, target, *args, **kwargs):
        real_save(self, target, *args, **kwargs)
        Path(target).write_bytes(Path(target).read_bytes()[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    def no_rename(source, destination):
        raise OSError(errno.ENOSPC, "No space left on device")

    def arm() -> None:
        if request.param == "half-written":
            monkeypatch.setattr(PosixPath, "write_text", write_half)
            monkeypatch.setattr(Figure, "savefig", save_half)
        else:
            monkeypatch.setattr("os.replace", no_rename)

    return arm


def no_temporary_files(folder: Path) -> bool:
    return not [path for path in folder.rglob("*") if path.name.endswith(".tmp")]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, failing_writes):
    text, plot = tmp_path / "table.md", tmp_path / "roc.png"
    cache = tmp_path / "corpora" / "fortunes-0123.json"
    write_text(text, "old table\n")
    plot_roc(made_up("a"), plot, "old")
    old_plot = plot.read_bytes()
    cache.parent.mkdir()
    cache.write_text('{"texts": ["old"]}')
    failing_writes()
    with pytest.raises(OSError, match="No space left"):
        write_text(text, "new table, much longer than the old one\n")
    with pytest.raises(OSError, match="No space left"):
        plot_roc(made_up("b", seed=1), plot, "new")
    with pytest.raises(InputError, match=r"cannot write the corpus cache .*No space left") as error:
        builtin._write_atomically(cache, '{"texts": ["new"]}')
    one_line(error)
    assert text.read_text() == "old table\n" and plot.read_bytes() == old_plot
    assert cache.read_text() == '{"texts": ["old"]}'
    assert no_temporary_files(tmp_path)


def score_stage(cache: Path) -> Stage:
    return Stage("baselines", "baselines x", {}, (), "f" * 64, "baselines/x-ffffffffffffffff")


def test_a_score_stage_that_fails_while_writing_leaves_nothing_stray(tmp_path, failing_writes, monkeypatch):
    cache = tmp_path / "cache"
    stage = score_stage(cache)
    out = stage.out(cache)
    out.mkdir(parents=True)  # as an older ltmia left a stage killed after its scores, before stage.json
    (out / "scores.json").write_text('{"old": true}')
    (out / "scores.json.4242.tmp").write_text('{"ol')
    failing_writes()
    with pytest.raises(OSError, match="No space left"):
        write_scores(stage, cache, made_up("new"))
    assert (out / "scores.json").read_text() == '{"old": true}' and not (out / STAGE_FILE).exists()
    partial = out.with_name(out.name + ".partial")
    assert sorted(path.name for path in partial.iterdir()) == [MARKER]  # ltmia's marked scratch only
    monkeypatch.undo()  # the disk has room again: the next run clears the scratch and finishes
    write_scores(stage, cache, made_up("new"))
    assert sorted(path.name for path in out.iterdir()) == ["scores.json"] and not partial.exists()
    assert no_temporary_files(tmp_path)


def test_a_score_stage_replaces_an_in_place_leftover_and_its_debris(tmp_path):
    cache = tmp_path / "cache"
    stage = score_stage(cache)
    out = stage.out(cache)
    out.mkdir(parents=True)
    (out / "scores.json").write_text('{"old": true}')
    (out / "scores.json.4242.tmp").write_text('{"ol')
    write_scores(stage, cache, made_up("new"))
    assert sorted(path.name for path in out.iterdir()) == ["scores.json"]
    assert Scored.from_json(json.loads((out / "scores.json").read_text())).name == "new"
    assert no_temporary_files(tmp_path) and not list(tmp_path.rglob("*.partial"))
    (out / "notes.txt").write_text("mine")  # a stage directory with anything else is not replaced
    shutil.move(out / "scores.json", tmp_path / "kept.json")
    with pytest.raises(OutputExistsError):
        write_scores(stage, cache, made_up("newer"))
    assert (out / "notes.txt").read_text() == "mine"
