"""The Ray backend: same cache, same bits as the local backend, and a study can switch backends midway."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import ray  # a dev dependency: without it this module must fail, not skip
import torch

from ltmia.artefacts import CHECKED, MARKER
from ltmia.errors import InputError
from ltmia.study.config import load_config
from ltmia.study.ray_backend import RESOURCES, run_ray
from ltmia.study.runner import run_local, run_stages, status
from ltmia.study.stages import RUNNERS, STAGE_FILE, StudyPlan, make_stage, plan

MINI = Path(__file__).parent / "data" / "mini.toml"
THREADS = RESOURCES["finetune"].cpus  # Ray tasks pin torch to their CPUs; the local runs here match them


@pytest.fixture(scope="module")
def study() -> StudyPlan:
    return plan(load_config(str(MINI)))


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray for the module (starting one takes seconds); ``run_ray`` uses it and leaves it up."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def with_threads(function):
    """Call ``function`` with torch on a Ray task's thread count (it changes the bits of the results)."""
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return function()
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local_cache(study, tmp_path_factory) -> Path:
    """The mini study run by the local backend, the reference every other cache must equal."""
    cache = tmp_path_factory.mktemp("local-cache")
    with_threads(lambda: run_local(study, cache, "cpu"))
    return cache


def fingerprint(cache: Path) -> dict[str, str]:
    """SHA-256 of every file under ``cache``; JSON without timings and with the cache root as ``<cache>``
    (so a manifest's checksums of JSON files are left out too); ltmia's checksum caches (modification
    times) aside."""
    found = {}
    for path in sorted(p for p in cache.rglob("*") if p.is_file() and p.name != CHECKED):
        data = path.read_bytes()
        if path.suffix == ".json":
            record = without_seconds(json.loads(data.decode().replace(str(cache), "<cache>")))
            data = json.dumps(record, sort_keys=True).encode()
        found[str(path.relative_to(cache))] = hashlib.sha256(data).hexdigest()
    return found


def without_seconds(value: object) -> object:
    if isinstance(value, dict) and str(value.get("file", "")).endswith(".json"):
        return {"file": value["file"]}  # a JSON file's checksum: that file is compared without timings
    if isinstance(value, dict):
        return {key: without_seconds(item) for key, item in value.items() if key != "seconds"}
    if isinstance(value, list):
        return [without_seconds(item) for item in value]
    return value


def events(record: list[tuple[str, str]], kind: str) -> list[str]:
    return [label for label, event in record if event.split()[0] == kind]


def recorder(record: list[tuple[str, str]]):
    return lambda index, total, stage, event: record.append((stage.label, event))


def test_ray_backend_equals_local_bit_for_bit(study, ray_instance, local_cache, tmp_path):
    record: list[tuple[str, str]] = []
    run_ray(study, tmp_path, "auto", on_stage=recorder(record))
    assert sorted(events(record, "done")) == sorted(stage.label for stage in study.stages)
    expected = fingerprint(local_cache)
    assert any(name.endswith(".safetensors") for name in expected)  # weights and stores are compared
    assert fingerprint(tmp_path) == expected


def test_started_locally_with_crash_leftovers_finishes_on_ray(study, ray_instance, local_cache, tmp_path):
    """Only the unfinished stages run on Ray, and leftovers of a killed stage resume as a Ray retry would."""
    first = dataclasses.replace(study, stages=study.stages[:3])  # zoo tokenizer, pretrain llama, fine-tune
    with_threads(lambda: run_local(first, tmp_path, "cpu"))
    stage_files = {s.label: (s.out(tmp_path) / STAGE_FILE).stat().st_mtime_ns for s in first.stages}
    by_label = {stage.label: stage for stage in study.stages}
    pretrain = by_label["pretrain gpt2"]  # killed after its artefact, before stage.json
    with_threads(lambda: RUNNERS.get("pretrain")(pretrain, tmp_path, "cpu"))
    target = by_label["fine-tune gpt2--fortunes"].out(tmp_path)  # killed while writing its scratch dir
    target.with_name(target.name + ".partial").mkdir(parents=True)
    (target.with_name(target.name + ".partial") / "model.safetensors").write_bytes(b"half a file")
    (target.with_name(target.name + ".partial") / MARKER).write_text('{"run": "killed"}')  # unlocked

    record: list[tuple[str, str]] = []
    run_ray(study, tmp_path, "cpu", on_stage=recorder(record))
    assert events(record, "cached") == [stage.label for stage in first.stages]
    assert sorted(events(record, "done")) == sorted(s.label for s in study.stages[3:])
    assert stage_files == {s.label: (s.out(tmp_path) / STAGE_FILE).stat().st_mtime_ns for s in first.stages}
    assert fingerprint(tmp_path) == fingerprint(local_cache)


def test_started_on_ray_finishes_locally(study, ray_instance, local_cache, tmp_path):
    first = dataclasses.replace(study, stages=study.stages[:5])
    run_ray(first, tmp_path, "cpu")
    record: list[tuple[str, str]] = []
    with_threads(lambda: run_local(study, tmp_path, "cpu", recorder(record)))
    assert events(record, "cached") == [stage.label for stage in first.stages]
    assert events(record, "start") == [stage.label for stage in study.stages[5:]]
    assert all(done for _, done in status(study, tmp_path))
    assert fingerprint(tmp_path) == fingerprint(local_cache)


def test_cuda_without_gpus_in_the_cluster_is_a_clear_error(study, ray_instance, tmp_path):
    with pytest.raises(InputError, match="the Ray cluster has none"):
        run_ray(study, tmp_path, "cuda")
    assert not any(tmp_path.iterdir())


def test_a_user_error_inside_a_task_surfaces_as_itself(study, ray_instance, tmp_path):
    """Ray wraps a task's exception; an LtmiaError comes back unwrapped, so the CLI prints one line."""
    finetune = next(stage for stage in study.stages if stage.kind == "finetune")
    params = {**finetune.params, "corpus": str(tmp_path / "no-such-texts.txt")}
    bad = make_stage("finetune", "fine-tune a missing corpus", params, (), "targets", "missing")
    with pytest.raises(InputError, match=r"no-such-texts\.txt: no such file") as raised:
        run_ray(dataclasses.replace(study, stages=[bad]), tmp_path / "cache", "cpu")
    assert "\n" not in str(raised.value)


def test_missing_ray_is_a_one_line_error(study, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(InputError, match=r"the ray backend needs Ray: pip install 'ltmia\[ray\]'"):
        run_stages(study, tmp_path, backend="ray")


def test_backend_options_are_checked(study, tmp_path):
    with pytest.raises(InputError, match="unknown backend 'dask'; choose one of: local, ray"):
        run_stages(study, tmp_path, backend="dask")
    with pytest.raises(InputError, match="settings of the ray backend"):
        run_stages(study, tmp_path, workers=2)
    with pytest.raises(InputError, match="a cluster at an address has its own size"):
        run_ray(study, tmp_path, address="auto", workers=2)


@pytest.mark.slow
def test_cli_unknown_backend_is_one_line(tmp_path):
    code = "import sys; from ltmia.cli import main; sys.argv = ['ltmia', *sys.argv[1:]]; main()"
    args = ["study", "run", str(MINI), "--cache", str(tmp_path / "cache"), "--backend", "dask"]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown backend 'dask'; choose one of: local, ray"
