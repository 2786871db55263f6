"""The stage graph of a study: what to compute, keyed by its inputs, and how to compute each kind.

zoo tokenizer -> pretrain each zoo architecture -> fine-tune each combo (SPEC §2-3) -> extract its store
(SPEC §4-5) -> train each classifier (SPEC §6) -> score each (combo, split) with the baselines and with
each classifier (SPEC §5, §7), and, when the config names any (``[costly]``), with the costly attacks in a
stage of their own that loads the combo's models once. The report (``ltmia.study.report``) reads the
scores.

A stage's key is the SHA-256 of its kind, its parameters and its dependencies' keys, so it names exactly
the inputs its output depends on: change one setting and the keys of that stage and everything downstream
change (new directories), while every other stage keeps its key and its cached output. The output of a
stage lives in ``<cache>/<kind dir>/<readable slug>-<key[:16]>`` and is finished when its ``stage.json``
exists: the artefact is written atomically first (``ltmia.artefacts.building``) and ``stage.json`` last,
so a killed run never leaves a stage that looks done. Stages are plain data (picklable), so a backend can
run them anywhere that sees the cache directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ltmia.artefacts import building, strays, versions, write_json
from ltmia.classifier.checkpoint import WEIGHTS_FILE, shipped_classifier
from ltmia.data import corpus_splits
from ltmia.registry import Registry
from ltmia.settings import StoreSettings, ZooSettings
from ltmia.sources import source_record
from ltmia.study.config import Combo, StudyConfig

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
STAGE_VERSION = 1  # bump when a stage's code changes its numbers: every key (and cache entry) changes


@dataclass(frozen=True)
class Stage:
    """One unit of work: ``kind`` selects the runner, ``params`` and ``deps`` are all it reads."""

    kind: str
    label: str
    params: dict = field(hash=False, compare=False)
    deps: tuple[Stage, ...] = ()
    key: str = ""
    path: str = ""  # relative to the cache root
    runtime: dict = field(default_factory=dict, hash=False, compare=False)  # how, not what: not in the key

    def out(self, cache: Path) -> Path:
        return Path(cache) / self.path

    def done(self, cache: Path) -> bool:
        """Finished: its ``stage.json`` exists (the shipped classifier has nothing to run)."""
        return self.kind == "shipped" or (self.out(cache) / STAGE_FILE).exists()


def stage_key(kind: str, params: dict, deps: tuple[Stage, ...]) -> str:
    payload = {"kind": kind, "version": STAGE_VERSION, "params": params, "deps": [d.key for d in deps]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def make_stage(kind: str, label: str, params: dict, deps: tuple[Stage, ...], folder: str, slug: str) -> Stage:
    key = stage_key(kind, params, deps)
    return Stage(kind, label, params, deps, key, f"{folder}/{slug}-{key[:16]}")


# --- planning -----------------------------------------------------------------------------------------


@dataclass
class StudyPlan:
    """Every stage of a study in dependency order, plus the lookups the report needs."""

    config: StudyConfig
    stages: list[Stage]
    targets: dict[Combo, Stage]
    stores: dict[Combo, Stage]
    classifiers: dict[str, Stage]
    baselines: dict[tuple[Combo, str], Stage]
    lt_mia: dict[tuple[str, Combo, str], Stage]
    costly: dict[tuple[Combo, str], Stage] = field(default_factory=dict)  # empty without [costly]


def zoo_stages(zoo: ZooSettings, archs: list[str]) -> dict[str, Stage]:
    """A tokenizer stage, then one pretraining stage per architecture, all in one zoo directory."""
    settings = zoo.record()
    zoo_key = stage_key("zoo", settings, ())
    folder = f"zoo/{zoo_key[:16]}"
    tokenizer = Stage(
        "tokenizer",
        "zoo tokenizer",
        settings,
        (),
        stage_key("tokenizer", settings, ()),
        f"{folder}/tokenizer",
    )
    return {
        arch: Stage(
            "pretrain",
            f"pretrain {arch}",
            {**settings, "arch": arch},
            (tokenizer,),
            stage_key("pretrain", {**settings, "arch": arch}, (tokenizer,)),
            f"{folder}/{arch}",
        )
        for arch in archs
    }


def finetune_stage(combo: Combo, pretrained: dict[str, Stage]) -> Stage:
    params = {
        "model": combo.model,
        "corpus": combo.corpus,
        "column": combo.column,
        "kind": combo.kind,
        "members": combo.members,
        "val": combo.val,
        "seed": combo.seed,
        "recipe": dict(combo.recipe_items),
        "bos": combo.bos,
        "model_source": source_record(combo.model) if not combo.arch else {},
    }
    deps = (pretrained[combo.arch],) if combo.arch else ()
    return make_stage("finetune", f"fine-tune {combo.slug}", params, deps, "targets", combo.slug)


def extract_stage(combo: Combo, target: Stage, store: StoreSettings) -> Stage:
    """The memory budget changes how extraction splits its work, not its numbers: a runtime setting."""
    stage = make_stage("extract", f"extract {combo.slug}", store.plan(), (target,), "stores", combo.slug)
    return replace(stage, runtime={"memory_budget_bytes": store.memory_budget_bytes})


def classifier_stage(name: str, params: dict, stores: list[Stage]) -> Stage:
    return make_stage("classifier", f"train classifier {name}", params, tuple(stores), "classifiers", name)


def shipped_stage(name: str, shipped: str) -> Stage:
    """The classifier that ships with ltmia: nothing to run, keyed by its weights' checksum."""
    folder = shipped_classifier(shipped)
    digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    return Stage("shipped", f"shipped classifier {name}", {"path": str(folder)}, (), digest, str(folder))


def plan(config: StudyConfig) -> StudyPlan:
    """Every stage the study needs, deduplicated by key, dependencies first, the classifiers' as early as
    their dependencies allow."""
    archs = list(dict.fromkeys(c.arch for c in config.all_combos if c.arch))
    pretrained = zoo_stages(config.zoo, archs)
    targets = {c: finetune_stage(c, pretrained) for c in config.all_combos}
    stores = {c: extract_stage(c, targets[c], config.store) for c in config.all_combos}
    classifiers = {}
    for name, spec in config.classifiers.items():
        if spec.shipped is not None:
            classifiers[name] = shipped_stage(name, spec.shipped)
        else:
            train_stores = [stores[c] for c in config.combos(spec.train)]
            classifiers[name] = classifier_stage(name, spec.params, train_stores)
    baselines, lt_mia = {}, {}
    for group in config.groups.values():
        for combo in config.combos(group.combo_sets):
            store = stores[combo]
            baselines[combo, group.split] = make_stage(
                "baselines",
                f"baselines {combo.slug} ({group.split})",
                {"split": group.split},
                (store,),
                "scores",
                f"baselines--{combo.slug}",
            )
            for name, clf in classifiers.items():
                lt_mia[name, combo, group.split] = make_stage(
                    "lt_mia",
                    f"LT-MIA {name} on {combo.slug} ({group.split})",
                    {"split": group.split},
                    (clf, store),
                    "scores",
                    f"{name}--{combo.slug}",
                )
    costly = costly_stages(config, stores)
    ordered: dict[str, Stage] = {}
    # Classifiers first: they need only their training stores, so a long study has its classifiers (and the
    # ablations between them) long before the costly evaluation targets are fine-tuned. Then one evaluation
    # combo at a time, every score of it before the next target is fine-tuned: a study stopped after hours
    # has whole combos in the cache, which a smaller config with the same keys can report.
    for stage in classifiers.values():
        add_with_deps(stage, ordered)
    for combo, split in baselines:
        add_with_deps(baselines[combo, split], ordered)
        for name in classifiers:
            add_with_deps(lt_mia[name, combo, split], ordered)
        if (combo, split) in costly:
            add_with_deps(costly[combo, split], ordered)
    return StudyPlan(config, list(ordered.values()), targets, stores, classifiers, baselines, lt_mia, costly)


def costly_stages(config: StudyConfig, stores: dict[Combo, Stage]) -> dict[tuple[Combo, str], Stage]:
    """One costly-attack stage per (combo, split) of a group when the config names costly attacks.

    Its key depends on the attacks, their options and the store only; the device is a runtime setting.
    Every other stage's key is the same with or without it.
    """
    if not config.costly_attacks or config.costly is None:
        return {}
    params = {"attacks": list(config.costly_attacks), "options": config.costly.record()}
    out = {}
    for group in config.groups.values():
        for combo in config.combos(group.combo_sets):
            out[combo, group.split] = make_stage(
                "costly",
                f"costly attacks {combo.slug} ({group.split})",
                {**params, "split": group.split},
                (stores[combo],),
                "scores",
                f"costly--{combo.slug}",
            )
    return out


def add_with_deps(stage: Stage, ordered: dict[str, Stage]) -> None:
    """Depth-first: dependencies enter ``ordered`` before the stage that needs them."""
    if stage.key in ordered:
        return
    for dep in stage.deps:
        add_with_deps(dep, ordered)
    ordered[stage.key] = stage


# --- running ------------------------------------------------------------------------------------------

Runner = Callable[[Stage, Path, str], None]
RUNNERS: Registry[Runner] = Registry("stage kind")
"""How to compute each kind of stage: ``runner(stage, cache, device)``, registered below by kind."""


def run_stage(stage: Stage, cache: Path, device: str = "auto") -> None:
    """Compute one stage whose dependencies are done, then mark it done (``stage.json``, last)."""
    if stage.done(cache):
        return
    missing = [d.label for d in stage.deps if not d.done(cache)]
    if missing:
        raise RuntimeError(f"{stage.label}: dependencies not done: {', '.join(missing)}")
    RUNNERS.get(stage.kind)(stage, cache, device)
    record = {
        "kind": stage.kind,
        "label": stage.label,
        "key": stage.key,
        "params": stage.params,
        "deps": [d.key for d in stage.deps],
        "versions": versions(),
    }
    write_json(stage.out(cache) / STAGE_FILE, record)


LOG_EVERY_STEPS = 10
LOG_EVERY_SECONDS = 60.0


def logged_steps(label: str) -> Callable[[int, float], None]:
    """An ``on_step`` callback that logs every ``LOG_EVERY_STEPS`` steps: a stage of a real model runs for
    an hour, and a log that says nothing for that long looks hung."""
    steps = 0

    def on_step(epoch: int, loss: float) -> None:
        nonlocal steps
        steps += 1
        if steps % LOG_EVERY_STEPS == 0:
            log.info("%s: epoch %d, step %d, loss %.4f", label, epoch, steps, loss)

    return on_step


def logged_texts(label: str) -> Callable[[int, int], None]:
    """An ``on_texts`` callback that logs at most every ``LOG_EVERY_SECONDS`` and at the end."""
    last = time.perf_counter()

    def on_texts(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= LOG_EVERY_SECONDS or done >= total:
            last = now
            log.info("%s: %d/%d texts", label, done, total)

    return on_texts


def zoo_settings(params: dict) -> ZooSettings:
    """The `ZooSettings` a zoo stage's parameters record (its ``record()``, plus the architecture)."""
    return ZooSettings(**{key: value for key, value in params.items() if key != "arch"})


@RUNNERS.register("tokenizer")
def run_tokenizer(stage: Stage, cache: Path, device: str) -> None:
    from ltmia.zoo.pretrain import build_zoo

    build_zoo(stage.out(cache).parent, [], zoo_settings(stage.params), device)


@RUNNERS.register("pretrain")
def run_pretrain(stage: Stage, cache: Path, device: str) -> None:
    from ltmia.zoo.pretrain import build_zoo

    build_zoo(stage.out(cache).parent, [stage.params["arch"]], zoo_settings(stage.params), device)


@RUNNERS.register("finetune")
def run_finetune(stage: Stage, cache: Path, device: str) -> None:
    from ltmia.finetune import Recipe, finetune

    p = stage.params
    base = str(stage.deps[0].out(cache)) if stage.deps else p["model"]
    members, column, kind = p["members"], p["column"], p["kind"]
    splits = corpus_splits(p["corpus"], members, p["val"], members, p["seed"], column=column, kind=kind)
    recipe, on_step = Recipe(**p["recipe"]), logged_steps(stage.label)
    finetune(base, splits, stage.out(cache), recipe, bos=p["bos"], device=device, on_step=on_step)


@RUNNERS.register("extract")
def run_extract(stage: Stage, cache: Path, device: str) -> None:
    from ltmia.extract import extract_target

    settings = StoreSettings(**stage.params, **stage.runtime)
    target, on_texts = stage.deps[0].out(cache), logged_texts(stage.label)
    extract_target(target, stage.out(cache), settings, device=device, on_texts=on_texts)


@RUNNERS.register("classifier")
def run_classifier(stage: Stage, cache: Path, device: str) -> None:
    from ltmia.classifier import LTMIA
    from ltmia.store import Store
    from ltmia.train_state import clear_state

    out = stage.out(cache)
    if (out / "classifier.json").exists():  # trained before a crash that came before stage.json
        return
    stores = [Store(d.out(cache)) for d in stage.deps]
    epochs = out.with_name(out.name + ".epochs")  # the stage key names it: only this training's state
    LTMIA(**stage.params, device=device).fit(stores, checkpoints=epochs).save(out)
    clear_state(epochs, remove_directory=True)


SCORES_FILE = "scores.json"


def write_scores(stage: Stage, cache: Path, scored) -> None:
    """A score stage's ``scores.json``, built like every artefact (``ltmia.artefacts.building``): a run
    killed while writing leaves only ltmia's marked scratch directory, cleared by the next run, never a
    stray temporary file. A stage directory holding nothing but the scores of a run killed before its
    ``stage.json`` (as earlier ltmia versions wrote them, in place) is replaced; anything else is refused."""
    out = stage.out(cache)
    stale = out.is_dir() and not strays(out, [SCORES_FILE])  # scores.json and its debris only
    with building(out, what=f"{stage.kind} score table", replace=stale) as scratch:
        write_json(scratch / SCORES_FILE, scored.to_json())


@RUNNERS.register("baselines")
def run_baselines(stage: Stage, cache: Path, device: str) -> None:
    from ltmia.evaluation import baseline_scores
    from ltmia.store import Store

    write_scores(stage, cache, baseline_scores(Store(stage.deps[0].out(cache)), stage.params["split"]))


@RUNNERS.register("costly")
def run_costly(stage: Stage, cache: Path, device: str) -> None:
    from ltmia.costly_scores import CostlyOptions, costly_scores, store_models
    from ltmia.store import Store

    store = Store(stage.deps[0].out(cache))
    options = CostlyOptions(**stage.params["options"])
    models = store_models(store, device, options.batch_size)
    attacks = stage.params["attacks"]
    write_scores(stage, cache, costly_scores(store, stage.params["split"], attacks, options, models))


@RUNNERS.register("lt_mia")
def run_lt_mia(stage: Stage, cache: Path, device: str) -> None:
    from ltmia.classifier import LTMIA
    from ltmia.evaluation import lt_mia_scores
    from ltmia.store import Store

    classifier = LTMIA.load(stage.deps[0].out(cache))
    store = Store(stage.deps[1].out(cache))
    write_scores(stage, cache, lt_mia_scores(classifier, store, stage.params["split"]))
