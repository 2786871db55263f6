"""The study configs under benchmarks/studies/ (committed results rest on them) plan, and share offline-full's
targets and stores, as their descriptions say."""

from pathlib import Path

import pytest

from ltmia.attacks.costly import COSTLY_ATTACKS
from ltmia.study.config import load_config
from ltmia.study.stages import plan

STUDIES = sorted((Path(__file__).parents[1] / "benchmarks" / "studies").glob("*.toml"))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_benchmark_study_shares_offline_fulls_targets_and_stores(path):
    study = plan(load_config(str(path)))
    full = plan(load_config("offline-full"))
    assert study.stores, "a study with no combos"
    for combo, store in study.stores.items():
        assert store.key == full.stores[combo].key  # the same fp32 store as offline-full's
        assert study.targets[combo].key == full.targets[combo].key


def test_costly_zoo_runs_every_costly_attack():
    study = plan(load_config(str(Path(__file__).parents[1] / "benchmarks" / "studies" / "costly-zoo.toml")))
    assert study.costly and all(split == "test" for _, split in study.costly)
    for stage in study.costly.values():
        assert stage.params["attacks"] == list(COSTLY_ATTACKS.names())
