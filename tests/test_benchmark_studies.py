"""The study configs under benchmarks/studies/ (committed results rest on them) plan, and share the targets
and stores of the shipped study they are a part of (offline-full, or offline-real for offline-real-*), as
their descriptions say."""

from pathlib import Path

import pytest

from ltmia.attacks.costly import COSTLY_ATTACKS
from ltmia.study.config import load_config
from ltmia.study.stages import plan

STUDIES = sorted((Path(__file__).parents[1] / "benchmarks" / "studies").glob("*.toml"))


def parent(path: Path) -> str:
    """The shipped study a benchmark study is a part of."""
    return "offline-real" if path.stem.startswith("offline-real-") else "offline-full"


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_benchmark_study_shares_its_parents_targets_stores_and_classifiers(path):
    study = plan(load_config(str(path)))
    full = plan(load_config(parent(path)))
    assert study.stores, "a study with no combos"
    for combo, store in study.stores.items():
        assert store.key == full.stores[combo].key  # the same store as the parent's
        assert study.targets[combo].key == full.targets[combo].key
    if parent(path) == "offline-real":  # its classifiers by their offline-real names (the others rename)
        for name, classifier in study.classifiers.items():
            if name in full.classifiers:
                assert classifier.key == full.classifiers[name].key
            else:  # only a shipped classifier may be added (it trains on nothing of the parent's)
                assert classifier.kind == "shipped"


def test_costly_zoo_runs_every_costly_attack():
    study = plan(load_config(str(Path(__file__).parents[1] / "benchmarks" / "studies" / "costly-zoo.toml")))
    assert study.costly and all(split == "test" for _, split in study.costly)
    for stage in study.costly.values():
        assert stage.params["attacks"] == list(COSTLY_ATTACKS.names())
