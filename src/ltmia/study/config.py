"""A study as data (the lm-evaluation-harness idea): a TOML file naming combos, classifiers and groups.

A *combo set* is models x corpora fine-tuned alike (SPEC §2-3); a *classifier* is trained on the stores of
some combo sets (SPEC §6); a *group* is what gets a row in the transfer table: the test split of training
combos (in-distribution) or every pair of held-out combos (SPEC §7 protocols). Models are ``zoo:<arch>``
(pretrained by ltmia on local text) or anything ``ltmia.models.load_causal_lm`` takes (a directory, a hub
id, a .gguf file, ``packaged:<name>``); corpora are anything ``ltmia.corpora.get_corpus`` takes.

``extends = "<config>"`` starts from another config and overrides it table by table, so an ablation is a
few lines on top of the study it varies. Shipped configs live in ``ltmia/study/configs/``.

An optional ``[costly]`` table (``attacks = ["recall", ...]`` plus ``ltmia.costly_scores.CostlyOptions``
fields, per-attack settings under ``[costly.params.<attack>]``) adds attacks that need the models again; it
is absent by default, and then nothing about the study changes.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from ltmia.attacks.costly import COSTLY_ATTACKS
from ltmia.corpora import CORPORA
from ltmia.corpora.files import parse_columns
from ltmia.costly_scores import CostlyOptions
from ltmia.data import BOS_CHOICES
from ltmia.device import resolve_precision
from ltmia.errors import InputError
from ltmia.features import feature_groups
from ltmia.finetune import Recipe
from ltmia.sources import PACKAGED, PACKAGED_PREFIX
from ltmia.store import StoreSettings
from ltmia.zoo.architectures import ARCHITECTURES, ZooSize
from ltmia.zoo.pretrain import ZooSettings, pretrain_recipe

ZOO_PREFIX = "zoo:"
SPLITS = ("test", "all")  # a group reads its combos' test split (training combos) or all their pairs


def shipped_configs() -> list[str]:
    """Names of the configs that ship with ltmia (``ltmia study plan <name>``)."""
    folder = resources.files("ltmia.study") / "configs"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def config_source(spec: str) -> tuple[str, str]:
    """(name, TOML text) of a shipped config name or a path to a .toml file."""
    path = Path(spec)
    if path.suffix == ".toml" and path.is_file():
        return path.stem, path.read_text()
    if spec in shipped_configs():
        return spec, (resources.files("ltmia.study") / "configs" / f"{spec}.toml").read_text()
    raise InputError(f"no study config {spec!r}: give a .toml file or one of: {', '.join(shipped_configs())}")


def merged(base: dict, override: dict) -> dict:
    """Tables merged key by key (recursively); anything else in ``override`` replaces ``base``."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def read_toml(spec: str, seen: tuple[str, ...] = ()) -> dict:
    """The raw table of a config with its ``extends`` chain applied."""
    name, text = config_source(spec)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"study config {spec}: invalid TOML ({err})") from err
    parent = raw.pop("extends", None)
    if parent is None:
        return {"name": name, **raw}
    if parent in seen:
        raise InputError(f"study config {spec} extends itself through {' -> '.join(seen)}")
    return merged({**read_toml(parent, (*seen, spec)), "name": name}, raw)


def take(table: dict, allowed: set[str], where: str) -> dict:
    """``table`` after checking it has no key outside ``allowed`` (a typo is an error, not a default)."""
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(allowed))}")
    return table


def names_of(cls) -> set[str]:
    return {f.name for f in fields(cls)}


@dataclass(frozen=True)
class Combo:
    """One model-dataset pair of a combo set, with everything its target depends on."""

    model: str
    corpus: str
    members: int
    val: int  # fine-tune validation texts; non-members = members (pairs, SPEC §2)
    seed: int
    recipe_items: tuple[tuple[str, object], ...]  # the Recipe as sorted (field, value) pairs: hashable
    column: str | None = None
    kind: str | None = None  # "text" or "code" (SPEC §2 truncation); None: the corpus's own
    bos: str | None = None  # never / always / auto (ltmia.data.resolve_bos); None: the model's default

    @property
    def recipe(self) -> Recipe:
        items: dict[str, Any] = dict(self.recipe_items)
        return Recipe(**items)

    @property
    def arch(self) -> str | None:
        """The zoo architecture of a ``zoo:<arch>`` model, else None."""
        return self.model.removeprefix(ZOO_PREFIX) if self.model.startswith(ZOO_PREFIX) else None

    @property
    def slug(self) -> str:
        """A readable file-name part, e.g. ``llama--fortunes``."""
        model = (
            self.arch or self.model.removeprefix(PACKAGED_PREFIX).split("::")[-1].rstrip("/").split("/")[-1]
        )
        corpus = self.corpus.removeprefix("hf:").rstrip("/").split("/")[-1].split(":")[0]
        return "--".join("".join(c if c.isalnum() or c in "._-" else "-" for c in p) for p in (model, corpus))


@dataclass(frozen=True)
class ComboSet:
    name: str
    combos: tuple[Combo, ...]


@dataclass(frozen=True)
class ClassifierSpec:
    """A classifier of the study: trained on ``train`` combo sets, or the one shipped with ltmia."""

    name: str
    train: tuple[str, ...] = ()
    shipped: bool = False
    params: dict = field(default_factory=dict)  # LTMIA(...) keyword arguments (variant, epochs, groups, ...)


@dataclass(frozen=True)
class Group:
    name: str
    combo_sets: tuple[str, ...]
    split: str
    paper: dict = field(default_factory=dict)  # published figures to print beside ours (SPEC §1)


@dataclass(frozen=True)
class StudyConfig:
    name: str
    description: str
    seed: int
    zoo: ZooSettings
    store: StoreSettings
    combo_sets: dict[str, ComboSet]
    classifiers: dict[str, ClassifierSpec]
    groups: dict[str, Group]
    raw: dict
    costly_attacks: tuple[str, ...] = ()  # [costly] attacks: run in their own stage after extraction
    costly: CostlyOptions | None = None

    @property
    def config_hash(self) -> str:
        """SHA-256 of the resolved config (``extends`` applied), recorded in every result file."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True).encode()).hexdigest()

    def combos(self, sets: tuple[str, ...] | list[str]) -> list[Combo]:
        """The combos of some combo sets, each once, in config order."""
        return list(dict.fromkeys(c for name in sets for c in self.combo_sets[name].combos))

    @property
    def all_combos(self) -> list[Combo]:
        return self.combos(list(self.combo_sets))


CLASSIFIER_PARAMS = {
    "variant", "d_model", "heads", "layers", "ff", "dropout", "mlp_hidden", "groups", "lr", "weight_decay",
    "label_smoothing", "batch_size", "epochs", "warmup_epochs", "min_lr", "grad_clip", "patience", "seed",
    "micro_batch_size",
}  # fmt: skip


def parse_zoo(table: dict) -> ZooSettings:
    """``[zoo]``: pool size, pretraining epochs, model size (ltmia.zoo.pretrain.ZooSettings)."""
    take(table, {"texts_per_corpus", "epochs", "hidden", "layers", "heads", "vocab_size", "corpora"}, "[zoo]")
    recipe = pretrain_recipe()
    recipe.epochs = table.get("epochs", recipe.epochs)
    defaults = ZooSettings()
    size = ZooSize(**{k: table[k] for k in ("hidden", "layers", "heads") if k in table})
    for corpus in table.get("corpora", defaults.corpora):
        if corpus not in CORPORA:
            raise InputError(
                f"[zoo]: unknown built-in corpus {corpus!r}; choose from {', '.join(CORPORA.names())}"
            )
    return ZooSettings(
        corpora=list(table.get("corpora", defaults.corpora)),
        texts_per_corpus=table.get("texts_per_corpus", defaults.texts_per_corpus),
        vocab_size=table.get("vocab_size", defaults.vocab_size),
        size=size,
        recipe=recipe,
    )


def parse_recipe(table: dict, where: str) -> Recipe:
    take(table, names_of(Recipe), f"{where} recipe")
    return Recipe(**table)


def parse_combo_set(name: str, table: dict, defaults: dict, seed: int) -> ComboSet:
    where = f"[combos.{name}]"
    take(table, {"models", "corpora", "members", "val", "recipe", "column", "kind", "bos"}, where)
    settings = {**defaults, **{k: v for k, v in table.items() if k not in ("models", "corpora")}}
    settings["recipe"] = {**defaults.get("recipe", {}), **table.get("recipe", {})}
    if not table.get("models") or not table.get("corpora"):
        raise InputError(f"{where} needs non-empty 'models' and 'corpora' lists")
    for model in table["models"]:
        if model.startswith(ZOO_PREFIX) and model.removeprefix(ZOO_PREFIX) not in ARCHITECTURES:
            raise InputError(
                f"{where}: unknown architecture {model!r}; choose zoo:<{'|'.join(ARCHITECTURES.names())}>"
            )
    members = settings.get("members")
    if not isinstance(members, int) or members < 20:
        raise InputError(f"{where}: members must be an integer >= 20 (5% of pairs form the test split)")
    val = settings.get("val", max(1, members // 10))
    recipe = parse_recipe(settings["recipe"], where)
    recipe.precision = resolve_precision(recipe.precision)  # "auto" -> what this machine runs: in the key
    if settings.get("kind") not in (None, "text", "code"):
        raise InputError(f"{where}: kind must be 'text' or 'code', got {settings['kind']!r}")
    if settings.get("column") is not None:
        parse_columns(settings["column"])  # a malformed a+b / a|b fails at plan time, not mid-run
    if settings.get("bos") not in (None, *BOS_CHOICES):
        raise InputError(f"{where}: bos must be one of {', '.join(BOS_CHOICES)}, got {settings['bos']!r}")
    for model in table["models"]:
        if model.startswith(PACKAGED_PREFIX) and model.removeprefix(PACKAGED_PREFIX) not in PACKAGED:
            raise InputError(
                f"{where}: unknown packaged model {model!r}; choose packaged:<{'|'.join(PACKAGED.names())}>"
            )
    combos = tuple(
        Combo(
            model=model,
            corpus=corpus,
            members=members,
            val=val,
            seed=seed,
            recipe_items=tuple(sorted(asdict(recipe).items())),
            column=settings.get("column"),
            kind=settings.get("kind"),
            bos=settings.get("bos"),
        )
        for model in table["models"]
        for corpus in table["corpora"]
    )
    return ComboSet(name, combos)


def parse_classifier(name: str, table: dict, combo_sets: dict) -> ClassifierSpec:
    where = f"[classifiers.{name}]"
    take(table, {"train", "shipped"} | CLASSIFIER_PARAMS, where)
    shipped = bool(table.get("shipped", False))
    train = tuple(table.get("train", ()))
    if shipped == bool(train):
        raise InputError(f"{where} needs either train = [combo sets] or shipped = true (not both)")
    for combo_set in train:
        if combo_set not in combo_sets:
            raise InputError(
                f"{where} trains on unknown combo set {combo_set!r}; defined: {', '.join(combo_sets)}"
            )
    params = {k: v for k, v in table.items() if k in CLASSIFIER_PARAMS}
    for group in params.get("groups") or ():
        if group not in feature_groups():
            raise InputError(
                f"{where}: unknown feature group {group!r}; choose from {', '.join(feature_groups())}"
            )
    if shipped and params:
        raise InputError(f"{where}: a shipped classifier takes no training settings")
    return ClassifierSpec(name, train, shipped, params)


def parse_group(name: str, table: dict, combo_sets: dict) -> Group:
    where = f"[groups.{name}]"
    take(table, {"combos", "split", "paper"}, where)
    sets = tuple(table.get("combos", ()))
    if not sets:
        raise InputError(f"{where} needs combos = [combo set names]")
    for combo_set in sets:
        if combo_set not in combo_sets:
            raise InputError(
                f"{where} names unknown combo set {combo_set!r}; defined: {', '.join(combo_sets)}"
            )
    split = table.get("split", "all")
    if split not in SPLITS:
        raise InputError(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
    return Group(name, sets, split, dict(table.get("paper", {})))


def parse_costly(table: dict) -> tuple[tuple[str, ...], CostlyOptions | None]:
    """``[costly]``: the costly attacks to run and their `CostlyOptions`; absent or empty: none."""
    take(table, {"attacks"} | names_of(CostlyOptions), "[costly]")
    attacks = tuple(table.get("attacks", ()))
    for name in attacks:
        if name not in COSTLY_ATTACKS:
            raise InputError(
                f"[costly]: unknown costly attack {name!r}; choose from {', '.join(COSTLY_ATTACKS)}"
            )
    options = {key: value for key, value in table.items() if key != "attacks"}
    if not attacks:
        if options:
            raise InputError("[costly] sets options but names no attacks (attacks = [...])")
        return (), None
    return attacks, CostlyOptions(**options)


def parse(raw: dict) -> StudyConfig:
    """A validated `StudyConfig` from a raw table; every problem is one InputError naming the key."""
    sections = {"zoo", "defaults", "store", "combos", "classifiers", "groups", "costly"}
    take(raw, {"name", "description", "seed", *sections}, "study")
    seed = raw.get("seed", 42)
    defaults = take(
        dict(raw.get("defaults", {})), {"members", "val", "recipe", "column", "kind", "bos"}, "[defaults]"
    )
    store_keys = {"k", "dtype", "batch_size", "shard_size", "precision", "memory_budget_mib"}
    store_table = take(dict(raw.get("store", {})), store_keys, "[store]")
    if "memory_budget_mib" in store_table:  # how extraction splits its work, not what it computes
        store_table["memory_budget_bytes"] = int(store_table.pop("memory_budget_mib")) * 2**20
    combo_sets = {name: parse_combo_set(name, t, defaults, seed) for name, t in raw.get("combos", {}).items()}
    if not combo_sets:
        raise InputError("a study needs at least one [combos.<name>] table")
    classifiers = {n: parse_classifier(n, t, combo_sets) for n, t in raw.get("classifiers", {}).items()}
    groups = {n: parse_group(n, t, combo_sets) for n, t in raw.get("groups", {}).items()}
    if not groups:
        raise InputError("a study needs at least one [groups.<name>] table to evaluate")
    costly_attacks, costly = parse_costly(dict(raw.get("costly", {})))
    member_shots = [a for a in costly_attacks if "member_prefix" in names_of(COSTLY_ATTACKS.get(a).settings)]
    every_row = [name for name, group in groups.items() if group.split == "all"]
    if member_shots and every_row:
        raise InputError(
            f"[costly]: {member_shots[0]} needs member shots from rows it does not score, but group "
            f"{every_row[0]!r} scores every row of its combos; leave it out or score the test split"
        )
    return StudyConfig(
        name=raw["name"],
        description=raw.get("description", ""),
        seed=seed,
        zoo=parse_zoo(dict(raw.get("zoo", {}))),
        store=StoreSettings(**store_table),
        combo_sets=combo_sets,
        classifiers=classifiers,
        groups=groups,
        raw=raw,
        costly_attacks=costly_attacks,
        costly=costly,
    )


def load_config(spec: str, seed: int | None = None) -> StudyConfig:
    """Read, merge and validate a study config (a shipped name or a .toml path); ``seed`` overrides it."""
    raw = read_toml(spec)
    if seed is not None:
        raw = {**raw, "seed": seed, "name": f"{raw['name']}-seed{seed}"}
    return parse(raw)
