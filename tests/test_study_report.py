"""``ltmia study report``: a study's tables rendered again from its results.json alone, with approximate
intervals (≈) where the record has none and its bootstrap intervals kept as they are."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ltmia.artefacts import OUTPUT_RECORD
from ltmia.errors import InputError, OutputExistsError
from ltmia.study.report import rerender

REPO = Path(__file__).resolve().parent.parent


def metrics(auc: float, tpr1: float, tpr01: float, n: int = 1000, **cis) -> dict:
    return {"auc": auc, "tpr_at_1pct": tpr1, "tpr_at_01pct": tpr01, "n_members": n, "n_nonmembers": n, **cis}


def legacy_study(directory: Path) -> Path:
    """A results directory as ltmia wrote it before intervals: group "zeta" first in the config, then
    "alpha" (results.json sorts them); no interval anywhere."""
    groups = {
        # ref_loss 0.875 vs runner-up 0.848 at 1000 + 1000: Q1 = 0.7778, Q2 = 0.8167, SE^2 =
        # (0.1094 + 999 x 0.01215 + 999 x 0.05104) / 10^6 = 6.324e-5, so 0.875 +- 1.96 x 0.00795
        # = [0.8594, 0.8906], which excludes 0.848: bold.
        "zeta": {"ref_loss": metrics(0.875, 0.129, 0.020), "loss": metrics(0.848, 0.045, 0.002)},
        # wbc 0.810 vs lt_mia 0.799: [0.791, 0.829] holds 0.799: no bold.
        "alpha": {"lt_mia": metrics(0.799, 0.105, 0.006), "wbc": metrics(0.810, 0.039, 0.003)},
    }
    record = {
        "study": "mini",
        "description": "A made-up study.",
        "config_hash": "ab" * 32,
        "provenance": {"seeds": {"splits": 7}},
        "groups": {
            name: {
                "title": f"{name} (all rows)",
                "metrics": attacks,
                "paper": {"auc": 0.9} if name == "zeta" else {},
            }
            for name, attacks in sorted(groups.items())
        },
    }
    directory.mkdir()
    (directory / "results.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    (directory / "config.toml").write_text(
        'name = "mini"\n[groups.zeta]\ncombos = ["a"]\n[groups.alpha]\ncombos = ["b"]\n'
    )
    (directory / "summary.md").write_text("Point estimates only.\n")
    (directory / "groups").mkdir()
    for name in groups:
        (directory / "groups" / f"{name}.json").write_text(json.dumps(record["groups"][name]))
        (directory / "groups" / f"{name}.md").write_text("Point estimates only.\n")
        (directory / "groups" / f"{name}-roc.png").write_bytes(b"png")
    return directory


def test_legacy_results_get_approximate_intervals_marked_and_explained(tmp_path) -> None:
    results = legacy_study(tmp_path / "mini")
    (results / "notes.txt").write_text("mine")  # a user's file beside ltmia's
    table = rerender(results)

    assert list(table) == ["zeta", "alpha"]  # the config's order, not results.json's
    summary = (results / "summary.md").read_text()
    assert "Point estimates only" not in summary
    # columns lt_mia, then the baselines in registry order: loss, ref_loss, wbc; then the paper's figure
    assert "| zeta | 1000/1000 |  | 0.848 ≈[0.831, 0.865] | **0.875 ≈[0.859, 0.891]** |  | 0.9 |" in summary
    assert "0.810 ≈[0.791, 0.829]" in summary and "**0.810" not in summary
    assert "| best − runner-up |" not in summary  # no paired difference without scores
    assert summary.count("Hanley & McNeil (1982)") == 3  # under each table
    assert "benchmarks/results/approx_intervals.md" in summary
    assert "`ltmia study run mini`" in summary and "split seed 7" in summary
    assert summary.index("| zeta |") < summary.index("| alpha |")

    record = json.loads((results / "results.json").read_text())
    zeta = record["groups"]["zeta"]["metrics"]["ref_loss"]
    assert zeta["auc"] == 0.875 and zeta["tpr_at_1pct"] == 0.129  # points unchanged
    assert zeta["auc_ci"] == pytest.approx([0.8594, 0.8906], abs=1e-4)
    assert zeta["interval_method"] == {
        "auc": "hanley-mcneil",
        "tpr_at_1pct": "wilson-delta-secant",
        "tpr_at_01pct": "wilson-delta-secant",
    }
    assert json.loads((results / "groups" / "zeta.json").read_text()) == record["groups"]["zeta"]
    group_md = (results / "groups" / "zeta.md").read_text()
    assert "0.875 ≈[0.859, 0.891]" in group_md and "Hanley & McNeil" in group_md
    assert (results / "groups" / "zeta-roc.png").read_bytes() == b"png"  # needs the scores: kept
    assert (results / "notes.txt").read_text() == "mine"
    listed = json.loads((results / OUTPUT_RECORD).read_text())["files"]
    assert "groups/zeta.md" in listed and "notes.txt" not in listed

    first = {p.name: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    rerender(results)  # the filled intervals are read back as approximate ones, not taken for bootstrap
    assert {p.name: p.read_bytes() for p in results.rglob("*") if p.is_file()} == first


@pytest.mark.parametrize("study", ["offline-full-heldout", "costly-zoo"])
def test_bootstrap_results_re_render_byte_identical(tmp_path, study) -> None:
    """Committed results with bootstrap intervals: every table comes back exactly as write_report wrote it."""
    results = Path(shutil.copytree(REPO / "results" / study, tmp_path / study))
    rerender(results)
    for path in (REPO / "results" / study).rglob("*"):
        if path.is_file():
            assert (results / path.relative_to(REPO / "results" / study)).read_bytes() == path.read_bytes(), (
                path
            )


def test_mixed_results_keep_bootstrap_intervals_and_say_both(tmp_path) -> None:
    results = legacy_study(tmp_path / "mixed")
    record = json.loads((results / "results.json").read_text())
    alpha = record["groups"]["alpha"]
    alpha["metrics"]["lt_mia"].update(
        auc_ci=[0.780, 0.818], tpr_at_1pct_ci=[0.076, 0.155], tpr_at_01pct_ci=[0.0, 0.083]
    )
    alpha["metrics"]["wbc"].update(
        auc_ci=[0.790, 0.828], tpr_at_1pct_ci=[0.017, 0.091], tpr_at_01pct_ci=[0.002, 0.009]
    )
    alpha["bootstrap"] = {
        "method": "stratified percentile bootstrap",
        "replicates": 1000,
        "seed": 0,
        "level": 0.95,
    }
    alpha["comparisons"] = {
        "auc": {"best": "wbc", "runner_up": "lt_mia", "delta": 0.011, "low": -0.009, "high": 0.029}
    }
    (results / "results.json").write_text(json.dumps(record))
    rerender(results)
    summary = (results / "summary.md").read_text()
    assert "0.799 [0.780, 0.818]" in summary and "0.799 ≈" not in summary  # bootstrap kept, unmarked
    assert "0.875 ≈[0.859, 0.891]" in summary
    assert "wbc − lt_mia +0.011 [-0.009, +0.029]" in summary
    assert "stratified bootstrap interval (1000 resamples" in summary and "Hanley & McNeil" in summary
    assert "interval_method" not in json.dumps(
        json.loads((results / "results.json").read_text())["groups"]["alpha"]
    )


def test_report_refuses_what_is_not_a_studys_results(tmp_path) -> None:
    with pytest.raises(InputError, match=r"no results\.json"):
        rerender(tmp_path / "empty")
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("mine")
    with pytest.raises(OutputExistsError):
        rerender(user)
    results = legacy_study(tmp_path / "mini")
    (results / "groups" / "figure.png").write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match=r"figure\.png"):
        rerender(results)
    assert (results / "summary.md").read_text() == "Point estimates only.\n"  # refused: nothing rewritten


def test_cli_report_re_renders_and_refuses_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    import sys

    from ltmia.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["ltmia", "study", "report", *args])
        try:
            main()
            code = 0
        except SystemExit as exited:
            code = int(exited.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    results = legacy_study(tmp_path / "mini")
    code, out, _ = run(str(results))
    assert code == 0 and "re-rendered" in out and "≈" in (results / "summary.md").read_text()
    code, _, err = run(str(tmp_path / "nowhere"))
    assert code != 0 and "no results.json" in err and len(err.strip().splitlines()) == 1
