"""SIGKILL during every stage kind of a study (issue 16), then resume: the result equals an uninterrupted
run's, byte for byte.

A subprocess runs the one unfinished stage of a miniature study and kills itself (SIGKILL, nothing is
cleaned up) at the worst moment: the instant before the file or directory that completes its artefact is
renamed into place, when everything is written but nothing is final (for extraction, the second shard, so
a resumed store mixes shards of both processes). The test process then runs the study again.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ltmia.artefacts import MARKER
from ltmia.study.config import parse, read_toml
from ltmia.study.runner import run_local
from ltmia.study.stages import STAGE_FILE, plan

MINI = Path(__file__).parent / "data" / "mini.toml"

KILLER = """
import json, os, signal, sys
from pathlib import Path
import torch
from ltmia.study import stages
from ltmia.study.config import parse
from ltmia.study.runner import run_local

raw, cache, kind, victim, threads = json.loads(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:6]
torch.set_num_threads(int(threads))
real_replace, running = os.replace, [False]

def replace(source, destination):
    if running[0] and Path(destination).name == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(source, destination)

os.replace = replace
real_runner = stages.RUNNERS.get(kind)

def runner(stage, cache, device):
    running[0] = True
    real_runner(stage, cache, device)

stages.RUNNERS._entries[kind] = runner
run_local(stages.plan(parse(raw)), cache)
print("finished without being killed")
"""

# stage kind -> the name whose rename completes it (None: the stage's own directory)
VICTIMS = {
    "tokenizer": None,
    "pretrain": None,
    "finetune": None,
    "extract": "shard-00001.safetensors",
    "classifier": None,
    "baselines": "scores.json",
    "lt_mia": "scores.json",
}
OUTPUTS = {  # what must come out byte-identical
    "tokenizer": ["tokenizer.json"],
    "pretrain": ["model.safetensors"],
    "finetune": ["model.safetensors", "splits.json"],
    "extract": ["rows.json", *(f"shard-{i:05d}.safetensors" for i in range(5))],
    "classifier": ["model.safetensors"],
    "baselines": ["scores.json"],
    "lt_mia": ["scores.json"],
}


def study_raw() -> dict:
    """The miniature study with one combo: one stage of every kind, shards of 16 rows (80 rows: 5)."""
    raw = read_toml(str(MINI))
    del raw["combos"]["heldout"], raw["groups"]["held-out"]
    raw["store"] = {"shard_size": 16}
    return raw


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("uninterrupted") / "cache"
    run_local(plan(parse(study_raw())), cache)
    return cache


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(VICTIMS))
def test_a_kill_during_each_stage_kind_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, kind):
    study = plan(parse(study_raw()))
    stage = next(stage for stage in study.stages if stage.kind == kind)
    cache = Path(shutil.copytree(uninterrupted, tmp_path / "cache"))
    out = stage.out(cache)
    shutil.rmtree(out)  # every other stage stays done: only this one runs
    victim = VICTIMS[kind] or out.name
    args = [json.dumps(study_raw()), str(cache), kind, victim, str(torch.get_num_threads())]
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, *args], capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert not stage.done(cache)
    if VICTIMS[kind] in (None, "scores.json"):  # a scratch directory, never renamed, still marked as ltmia's
        assert not out.exists() and (out.with_name(out.name + ".partial") / MARKER).exists()
    run_local(study, cache)
    assert all(stage.done(cache) for stage in study.stages)
    assert not list(cache.rglob("*.partial"))
    assert not list(cache.rglob("*.tmp"))  # a dead writer's temporary files went with its scratch directory
    expected = stage.out(uninterrupted)
    for name in OUTPUTS[kind]:  # scores name their store by path: the caches' roots differ
        found = (out / name).read_bytes().replace(str(cache).encode(), b"<cache>")
        assert found == (expected / name).read_bytes().replace(str(uninterrupted).encode(), b"<cache>"), name
    assert json.loads((out / STAGE_FILE).read_text())["key"] == stage.key
