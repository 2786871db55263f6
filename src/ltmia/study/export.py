"""Export a classifier a study trained: its checkpoint plus ``study.json``, the record of what made it.

``ltmia study export-classifier offline-real lt-mia-scores --out DIR`` copies the classifier stage's
``model.safetensors`` and ``classifier.json`` out of the stage cache, so ``ltmia audit --classifier DIR`` can
use it without the cache; ``study.json`` names the study, its config hash, the stage key, the seeds, the
training combos and the command that trains the same weights again. The classifiers ltmia ships
(``src/ltmia/classifier/shipped/<name>/``) are such exports; ``audit`` shows their ``study.json``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ltmia.artefacts import building, write_json
from ltmia.classifier.checkpoint import RECORD_FILE, WEIGHTS_FILE
from ltmia.errors import InputError
from ltmia.study.config import load_config
from ltmia.study.stages import plan

STUDY_FILE = "study.json"


def export_classifier(
    config: str, classifier: str, cache: Path, out: Path, results: str | None = None
) -> Path:
    """Copy classifier ``classifier`` of study ``config`` from ``cache`` to a new directory ``out`` with its
    ``study.json`` (``results``: where the study's committed results are, recorded for readers)."""
    study = plan(load_config(config))
    stage = study.classifiers.get(classifier)
    if stage is None or stage.kind != "classifier":
        trained = [name for name, s in study.classifiers.items() if s.kind == "classifier"]
        raise InputError(
            f"study {study.config.name} trains no classifier {classifier!r}; it trains: {', '.join(trained)}"
        )
    if not stage.done(cache):
        raise InputError(
            f"classifier {classifier!r} of study {study.config.name} is not in {cache}: run "
            f"`ltmia study run {config} --cache {cache}` first"
        )
    spec = study.config.classifiers[classifier]
    record = {
        "study": study.config.name,
        "config": config,
        "config_hash": study.config.config_hash,
        "classifier": classifier,
        "stage_key": stage.key,
        "seeds": {"splits": study.config.seed, "classifiers": {classifier: spec.params.get("seed", 42)}},
        "trained_on": [  # model x corpus (combo set: the recipe's name in the config)
            f"{c.model} x {c.corpus} ({name})"
            for name in spec.train
            for c in study.config.combo_sets[name].combos
        ],
        "results": results,
        "reproduce": f"ltmia study run {config}  # its classifier stage writes the same {WEIGHTS_FILE} "
        "byte for byte on the same machine",
    }
    with building(Path(out), what="classifier export") as scratch:
        for name in (WEIGHTS_FILE, RECORD_FILE):
            shutil.copyfile(stage.out(cache) / name, scratch / name)
        write_json(scratch / STUDY_FILE, record)
    return Path(out)
