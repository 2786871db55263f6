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
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from ltmia.corpora import Kind
from ltmia.corpora.files import parse_columns
from ltmia.errors import InputError
from ltmia.settings import BosSetting, Recipe, Settings, StoreSettings, ZooSettings, check_keys
from ltmia.settings.classifier import CONFIG_PARAMS
from ltmia.settings.costly import CostlyOptions
from ltmia.settings.zoo import zoo_settings
from ltmia.sources import PACKAGED, PACKAGED_PREFIX

# Importing this module and reading a config (``read_toml``) load no torch, for the CLI and for a Ray
# driver that only plans: the settings models are torch-free, and what validating a config needs from the
# components (registries, the device) ``parse`` imports when it runs.

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


SECTIONS = ("zoo", "defaults", "store", "combos", "classifiers", "groups", "costly")
STUDY_KEYS = ("name", "description", "seed", *SECTIONS)
STORE_KEYS = (
    *(key for key in StoreSettings.model_fields if key not in ("seq_len", "memory_budget_bytes")),
    "memory_budget_mib",
)
"""``[store]``: `StoreSettings` but L (SPEC §4's, fixed) and the memory budget, given in MiB."""
GROUP_KEYS = ("combos", "split", "paper")


def names_of(cls) -> list[str]:
    return [f.name for f in fields(cls)]


class ComboSection(Settings):
    """``[combos.<name>]``: models x corpora fine-tuned alike. ``[defaults]`` gives any of these but the
    models and corpora to every combo set; ``recipe`` tables merge key by key (a `Recipe`)."""

    what: ClassVar[str] = "combo set"

    models: list[str] = Field(default_factory=list)
    corpora: list[str] = Field(default_factory=list)
    members: int | None = None  # member texts; as many non-members (pairs, SPEC §2)
    val: int | None = None  # fine-tune validation texts; default members // 10
    recipe: dict = Field(default_factory=dict)
    column: str | None = None  # a table file's or dataset's text column (``ltmia.corpora.files``)
    kind: Kind | None = None  # text or code (SPEC §2 truncation); None: the corpus's own
    bos: BosSetting | None = None  # ``ltmia.data.resolve_bos``; None: the model's default


COMBO_KEYS = tuple(ComboSection.model_fields)
DEFAULT_KEYS = tuple(key for key in COMBO_KEYS if key not in ("models", "corpora"))


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
    """A classifier of the study: trained on ``train`` combo sets, or one shipped with ltmia (``shipped``
    names it; ``shipped = true`` in a config is the default one)."""

    name: str
    train: tuple[str, ...] = ()
    shipped: str | None = None
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


def parse_zoo(table: dict) -> ZooSettings:
    """``[zoo]``: pool size, pretraining epochs, model size (``ltmia.settings.zoo.zoo_settings``)."""
    return zoo_settings(table, "[zoo]")


def parse_store(table: dict) -> StoreSettings:
    """``[store]``: `StoreSettings`, the memory budget in MiB (it splits the work, not the numbers)."""
    check_keys(table, STORE_KEYS, "[store]")
    values = {key: value for key, value in table.items() if key != "memory_budget_mib"}
    if "memory_budget_mib" in table:
        values["memory_budget_bytes"] = int(table["memory_budget_mib"]) * 2**20
    return StoreSettings.from_table(values, "[store]")


def parse_recipe(table: dict, where: str) -> Recipe:
    """A combo set's recipe: `Recipe` with "auto" precision resolved to what this machine runs (the
    resolved one is in the fine-tune key)."""
    from ltmia.device import resolve_precision

    recipe = Recipe.from_table(table, where)
    recipe.precision = resolve_precision(recipe.precision)
    return recipe


def parse_combo_set(name: str, table: dict, defaults: dict, seed: int) -> ComboSet:
    from ltmia.zoo.architectures import ARCHITECTURES

    where, recipe_where = f"[combos.{name}]", f"[combos.{name}.recipe]"
    check_keys(table.get("recipe", {}), Recipe.model_fields, recipe_where)
    given = ComboSection.from_table(table, where).model_dump(exclude_unset=True)
    settings = {**defaults, **{k: v for k, v in given.items() if k not in ("models", "corpora")}}
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
    recipe = parse_recipe(settings["recipe"], recipe_where)
    if settings.get("column") is not None:
        parse_columns(settings["column"])  # a malformed a+b / a|b fails at plan time, not mid-run
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
            recipe_items=tuple(sorted(recipe.record().items())),
            column=settings.get("column"),
            kind=settings.get("kind"),
            bos=settings.get("bos"),
        )
        for model in table["models"]
        for corpus in table["corpora"]
    )
    return ComboSet(name, combos)


def parse_classifier(name: str, table: dict, combo_sets: dict) -> ClassifierSpec:
    from ltmia.classifier import check_params
    from ltmia.classifier.checkpoint import SHIPPED_DEFAULT, check_shipped_name
    from ltmia.classifier.score_inputs import check_score_inputs
    from ltmia.features import feature_groups

    where = f"[classifiers.{name}]"
    check_keys(table, ("train", "shipped", *CONFIG_PARAMS), where)
    given = table.get("shipped", False)
    if not isinstance(given, bool | str):
        raise InputError(f"{where}: shipped is true (the default shipped classifier) or a shipped name")
    shipped = check_shipped_name(SHIPPED_DEFAULT if given is True else given, where) if given else None
    train = tuple(table.get("train", ()))
    if (shipped is None) != bool(train):
        raise InputError(f"{where} needs either train = [combo sets] or shipped = true / a name (not both)")
    for combo_set in train:
        if combo_set not in combo_sets:
            raise InputError(
                f"{where} trains on unknown combo set {combo_set!r}; defined: {', '.join(combo_sets)}"
            )
    params = {k: v for k, v in table.items() if k in CONFIG_PARAMS}  # as given: the classifier's key
    for group in params.get("groups") or ():
        if group not in feature_groups():
            raise InputError(
                f"{where}: unknown feature group {group!r}; choose from {', '.join(feature_groups())}"
            )
    if params.get("score_inputs"):
        check_score_inputs(params["score_inputs"])
    if shipped is not None and params:
        raise InputError(f"{where}: a shipped classifier takes no training settings")
    check_params(params, where)
    return ClassifierSpec(name, train, shipped, params)


def parse_group(name: str, table: dict, combo_sets: dict) -> Group:
    where = f"[groups.{name}]"
    check_keys(table, GROUP_KEYS, where)
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
    from ltmia.attacks.costly import COSTLY_ATTACKS

    check_keys(table, ("attacks", *CostlyOptions.model_fields), "[costly]")
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
    return attacks, CostlyOptions.from_table(options, "[costly]")


def parse(raw: dict) -> StudyConfig:
    """A validated `StudyConfig` from a raw table; every problem is one InputError naming the key."""
    from ltmia.attacks.costly import COSTLY_ATTACKS

    check_keys(raw, STUDY_KEYS, "study config")
    seed = raw.get("seed", 42)
    defaults = check_keys(dict(raw.get("defaults", {})), DEFAULT_KEYS, "[defaults]")
    check_keys(defaults.get("recipe", {}), Recipe.model_fields, "[defaults.recipe]")
    defaults = ComboSection.from_table(defaults, "[defaults]").model_dump(exclude_unset=True)
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
        store=parse_store(dict(raw.get("store", {}))),
        combo_sets=combo_sets,
        classifiers=classifiers,
        groups=groups,
        raw=raw,
        costly_attacks=costly_attacks,
        costly=costly,
    )


def load_config(
    spec: str, seed: int | None = None, groups: Sequence[str] = (), classifiers: Sequence[str] = ()
) -> StudyConfig:
    """Read, merge and validate a study config (a shipped name or a .toml path); ``seed`` overrides it;
    ``groups`` / ``classifiers`` run only part of it (`select`)."""
    raw = read_toml(spec)
    if seed is not None:
        raw = {**raw, "seed": seed, "name": f"{raw['name']}-seed{seed}"}
    return select(parse(raw), groups, classifiers)


def select(config: StudyConfig, groups: Sequence[str] = (), classifiers: Sequence[str] = ()) -> StudyConfig:
    """Part of a study: only the named groups and classifiers (all of a kind when none is named), with the
    combo sets they use.

    Why: a study of real models runs for many hours, and each group should be reported (and committed) as
    soon as it is measured. The part keeps the study's name and every stage key (keys depend on inputs, not
    on the rest of the config), so the whole study later reuses everything the part computed; its
    description says what was left out, so a partial report never passes for the whole study.
    """
    if not groups and not classifiers:
        return config
    kept_groups = _named(groups, config.groups, "group")
    kept_classifiers = _named(classifiers, config.classifiers, "classifier")
    used = {s for g in kept_groups for s in config.groups[g].combo_sets}
    used |= {s for c in kept_classifiers for s in config.classifiers[c].train}
    left_out = [
        f"{what} {', '.join(repr(n) for n in names if n not in kept)}"
        for what, names, kept in (
            ("groups", config.groups, kept_groups),
            ("classifiers", config.classifiers, kept_classifiers),
        )
        if len(kept) < len(names)
    ]
    raw = config.raw
    note = (
        f"Part of study `{config.name}`, run with only some of its groups and classifiers; left out: "
        f"{'; '.join(left_out)}. Run it without --group / --classifier for the whole study."
    )
    return parse(
        {
            **raw,
            "description": f"{raw.get('description', '').strip()}\n\n{note}".strip(),
            "combos": {n: t for n, t in raw["combos"].items() if n in used},
            "classifiers": {n: t for n, t in raw.get("classifiers", {}).items() if n in kept_classifiers},
            "groups": {n: t for n, t in raw["groups"].items() if n in kept_groups},
        }
    )


def _named(names: Sequence[str], defined: dict, what: str) -> list[str]:
    """``names`` checked against a study's ``defined`` ones (all of them when none is named)."""
    for name in names:
        if name not in defined:
            choices = ", ".join(map(repr, defined))
            raise InputError(f"the study has no {what} {name!r}; its {what}s: {choices}")
    return list(dict.fromkeys(names)) if names else list(defined)
