"""The ``ltmia`` command line: each command wires library components and prints; no logic lives here.

Every error reaches the user as one line: errors a user can cause (``LtmiaError``, which name the fix) exit
with status 2, anything unexpected with status 1 and a pointer to ``--debug``, which shows the traceback.
User text printed to the terminal passes through ``ltmia.progress.printable`` (no control characters).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ltmia.errors import LtmiaError
from ltmia.settings import (
    ClassifierConfig,
    CostlyOptions,
    Recipe,
    StoreSettings,
    TrainSettings,
    ZooSettings,
    ZooSize,
    default,
)
from ltmia.settings.base import PrecisionSetting

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Learned transfer membership inference.")
corpora_app = typer.Typer(no_args_is_help=True, help="Built-in and user corpora.")
zoo_app = typer.Typer(no_args_is_help=True, help="The offline model zoo: tokenizer + tiny pretrained LMs.")
app.add_typer(corpora_app, name="corpora")
study_app = typer.Typer(
    no_args_is_help=True, help="Studies: plan and run configs of combos, classifiers, groups."
)
app.add_typer(zoo_app, name="zoo")
models_app = typer.Typer(
    no_args_is_help=True, help="Models ltmia can use offline: packaged real LMs and the zoo."
)
app.add_typer(models_app, name="models")
app.add_typer(study_app, name="study")
classifiers_app = typer.Typer(no_args_is_help=True, help="The LT-MIA classifiers shipped with ltmia.")
app.add_typer(classifiers_app, name="classifiers")

console = Console()
DEBUG_ENV = "LTMIA_DEBUG"
GLOBAL_FLAGS = ("--debug", "--verify")
CLASSIFIER_HELP = "Classifier directory, or the name of one shipped with ltmia (real, zoo); default: real."


@app.callback()
def global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="On an error, show its traceback (also: LTMIA_DEBUG=1).")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Hash every file of every artefact read (default: only files changed since their last "
            "check; also: LTMIA_VERIFY=1).",
        ),
    ] = False,
) -> None:
    """Learned transfer membership inference."""
    from ltmia.artefacts import VERIFY_ENV

    if debug:
        os.environ[DEBUG_ENV] = "1"
    if verify:
        os.environ[VERIFY_ENV] = "1"  # inherited by subprocesses and Ray workers started from here


ModelHelp = (
    "zoo/local directory, hub id, .gguf file (or DIR::file.gguf) or packaged:<name> (ltmia models list)"
)
PrecisionOption = Annotated[
    str,
    typer.Option(help="fp32 (the paper), bf16 (autocast), or auto: bf16 where the CPU/GPU has it natively."),
]
BosOption = Annotated[
    str | None,
    typer.Option(
        help="Prepend BOS: never (SPEC §2), always, auto (as the tokenizer does); default: the model's need."
    ),
]


# ---------------------------------------------------------------------------------------------- corpora
@corpora_app.command("list")
def corpora_list() -> None:
    """List the built-in corpora."""
    from ltmia.corpora import CORPORA

    table = Table("name", "kind", "origin", "description")
    for name in CORPORA:
        corpus = CORPORA.get(name)
        table.add_row(name, corpus.kind, corpus.origin, corpus.description.split(". ")[0])
    console.print(table)
    console.print(
        "Any .txt/.jsonl/.csv/.parquet file, source folder or hf:<dataset id> works as a corpus too."
    )


@corpora_app.command("show")
def corpora_show(
    name: str,
    column: Annotated[
        str | None,
        typer.Option(help="Text column of a table file or dataset (a+b: joined; a|b: first non-blank)."),
    ] = None,
) -> None:
    """Describe a corpus: origin, licence, sizes and an example text."""
    from ltmia.corpora import corpus_texts, get_corpus
    from ltmia.data import MIN_CHARS, filter_texts
    from ltmia.progress import printable

    corpus = get_corpus(name, column=column)
    texts = corpus_texts(corpus, pool="all")
    attack = filter_texts(corpus_texts(corpus, pool="attack"))
    table = Table(show_header=False)
    for key, value in [
        ("name", corpus.name),
        ("kind", corpus.kind),
        ("description", corpus.description),
        ("origin", corpus.origin),
        ("licence", corpus.licence),
        ("distinct texts", str(len(texts))),
        (f"member/non-member pool (> {MIN_CHARS} chars)", str(len(attack))),
        ("pretraining pool", str(len(corpus_texts(corpus, pool="pretrain")))),
        ("example", attack[0][:600] if attack else "-"),
    ]:
        table.add_row(key, escape(printable(value, newlines=True)))
    console.print(table)


@corpora_app.command("sample")
def corpora_sample(
    name: str,
    n: Annotated[int, typer.Option("-n", help="How many texts.")] = 3,
    seed: int = 0,
    column: Annotated[
        str | None,
        typer.Option(help="Text column of a table file or dataset (a+b: joined; a|b: first non-blank)."),
    ] = None,
) -> None:
    """Print n random texts of a corpus's member/non-member pool."""
    from ltmia.corpora import corpus_texts, get_corpus
    from ltmia.data import filter_texts, seeded_order
    from ltmia.progress import printable

    texts = filter_texts(corpus_texts(get_corpus(name, column=column), pool="attack"))
    for i in seeded_order(texts, seed)[:n]:
        console.rule()
        console.print(printable(texts[i], newlines=True), markup=False, highlight=False)


# -------------------------------------------------------------------------------------------------- zoo
@zoo_app.command("build")
def zoo_build(
    out: Annotated[Path, typer.Option(help="Zoo directory (resumed when it exists).")] = Path("runs/zoo"),
    arch: Annotated[list[str] | None, typer.Option(help="Architectures to build; default all.")] = None,
    corpus: Annotated[list[str] | None, typer.Option(help="Corpora of the pretraining pool.")] = None,
    texts_per_corpus: int = default(ZooSettings, "texts_per_corpus"),
    epochs: int = default(ZooSettings, "recipe").epochs,
    hidden: int = default(ZooSize, "hidden"),
    layers: int = default(ZooSize, "layers"),
    heads: int = default(ZooSize, "heads"),
    vocab_size: int = default(ZooSettings, "vocab_size"),
    device: str = "auto",
) -> None:
    """Train the tokenizer and pretrain tiny models of each architecture on the pretraining pool."""
    from ltmia.progress import step_bar
    from ltmia.settings.zoo import zoo_settings
    from ltmia.zoo.architectures import ARCHITECTURES
    from ltmia.zoo.pretrain import build_zoo

    flat = {"texts_per_corpus": texts_per_corpus, "epochs": epochs, "vocab_size": vocab_size}
    size = {"hidden": hidden, "layers": layers, "heads": heads}
    settings = zoo_settings(
        {**flat, **size, **({"corpora": list(corpus)} if corpus else {})}, "ltmia zoo build"
    )
    with step_bar(console) as bar:
        built = build_zoo(out, arch or ARCHITECTURES.names(), settings, device, on_arch=bar.task)
    _print_zoo(out, list(built))


def _print_zoo(zoo: Path, archs: list[str]) -> None:
    from ltmia.artefacts import read_manifest
    from ltmia.zoo.architectures import ARCHITECTURES

    table = Table(
        "architecture", "family", "parameters", "pretrained", "val loss", "minutes", title=f"zoo {zoo}"
    )
    for name in archs:
        manifest = read_manifest(zoo / name)
        if manifest is None:
            table.add_row(name, ARCHITECTURES.get(name).family, "-", "no", "-", "-")
            continue
        history = manifest["pretrain_log"]["epochs"]
        table.add_row(
            name,
            manifest["family"],
            f"{manifest['parameters']:,}",
            "yes",
            f"{history[-1].get('val_loss', float('nan')):.3f}",
            f"{manifest['seconds'] / 60:.1f}",
        )
    console.print(table)


@zoo_app.command("list")
def zoo_list(zoo: Annotated[Path, typer.Option(help="Zoo directory to inspect.")] = Path("runs/zoo")) -> None:
    """List the registered architectures and which are pretrained in a zoo directory."""
    from ltmia.zoo.architectures import ARCHITECTURES

    _print_zoo(zoo, ARCHITECTURES.names())


# ----------------------------------------------------------------------------------------------- models
@models_app.command("list")
def models_list(
    zoo: Annotated[Path, typer.Option(help="Zoo directory to inspect.")] = Path("runs/zoo"),
) -> None:
    """Real pretrained LMs packaged on PyPI (packaged:<name>) and the zoo's architectures."""
    from ltmia.artefacts import read_manifest
    from ltmia.sources import INSTALL_REAL, PACKAGED, converted_dir

    table = Table(title="real pretrained LMs packaged on PyPI")
    table.add_column("model", no_wrap=True)
    for column in ("architecture", "parameters", "vocab", "licence", "installed", "size", "converted"):
        table.add_column(column)
    missing = []
    for name in PACKAGED:
        model = PACKAGED.get(name)
        installed = model.installed()
        if not installed:
            missing.append(f"packaged:{name}: {model.install}")
        table.add_row(
            f"packaged:{name}",
            model.architecture,
            model.parameters,
            f"{model.vocab:,}",
            model.licence,
            "yes" if installed else "no",
            f"{model.size_bytes() / 2**20:.0f} MiB" if installed else "-",
            "yes" if read_manifest(converted_dir(model.sha256)) else "no",
        )
    console.print(table)
    for line in missing:
        console.print(f"to install {line}", soft_wrap=True, markup=False, highlight=False)
    console.print(
        f"Both at once: `{INSTALL_REAL}`. A .gguf file works anywhere a model does too.", soft_wrap=True
    )
    zoo_list(zoo)


@classifiers_app.command("list")
def classifiers_list() -> None:
    """Each shipped classifier by name (--classifier NAME), the default marked, and the study that made it."""
    import json

    from ltmia.classifier.checkpoint import SHIPPED_DEFAULT, shipped_dir, shipped_names

    table = Table(title="shipped LT-MIA classifiers")
    for column in ("name", "default", "study", "classifier", "training combos", "results"):
        table.add_column(column)
    for name in shipped_names():
        path = shipped_dir(name) / "study.json"
        study = json.loads(path.read_text()) if path.exists() else {}
        table.add_row(
            name,
            "yes" if name == SHIPPED_DEFAULT else "",
            str(study.get("study", "-")),
            str(study.get("classifier", "-")),
            str(len(study.get("trained_on", []))),
            str(study.get("results", "-")),
        )
    console.print(table)


@models_app.command("convert")
def models_convert(
    model: Annotated[str, typer.Argument(help="A .gguf file, DIR::file.gguf or packaged:<name>.")],
) -> None:
    """Convert a GGUF model once into a safetensors directory in ltmia's cache and print where it is."""
    from ltmia.artefacts import read_manifest
    from ltmia.sources import resolve_model

    path = resolve_model(model)
    manifest = read_manifest(Path(path)) or {}
    quant = manifest.get("quantisation", {}).get("file_type", "-")
    console.print(f"{escape(model)} -> {path} (sha256 {manifest.get('sha256', '-')[:16]}..., {quant})")


# --------------------------------------------------------------------------------------------- finetune
@app.command()
def finetune(
    base: Annotated[str, typer.Option(help=f"Base model: {ModelHelp}.")],
    corpus: Annotated[str, typer.Option(help="Corpus name, file, source folder or hf:<id>.")],
    out: Annotated[
        Path, typer.Option(help="Target directory to write (a finished one of the same inputs is reused).")
    ],
    members: int = 1000,
    val: int = 100,
    non_members: int = 1000,
    seed: int = default(Recipe, "seed"),
    column: Annotated[
        str | None,
        typer.Option(help="Text column of a table file or dataset (a+b: joined; a|b: first non-blank)."),
    ] = None,
    kind: Annotated[str | None, typer.Option(help="text or code (decides truncation side).")] = None,
    epochs: int = default(Recipe, "epochs"),
    batch_size: int = default(Recipe, "batch_size"),
    lr: float = default(Recipe, "lr"),
    optimizer: Annotated[str, typer.Option(help="adamw or sgd.")] = default(Recipe, "optimizer"),
    momentum: Annotated[float, typer.Option(help="SGD momentum (sgd only).")] = default(Recipe, "momentum"),
    schedule: Annotated[str, typer.Option(help="constant, cosine or linear.")] = default(Recipe, "schedule"),
    warmup_steps: int = default(Recipe, "warmup_steps"),
    weight_decay: float | None = default(Recipe, "weight_decay"),
    grad_clip: float | None = default(Recipe, "grad_clip"),
    lora: Annotated[
        bool, typer.Option(help="LoRA (r 16, alpha 32, dropout 0.05) instead of full.")
    ] = default(Recipe, "lora"),
    lora_targets: Annotated[
        str | None, typer.Option(help="Comma-separated LoRA modules; default: the family's attention + MLP.")
    ] = None,
    precision: PrecisionOption = default(Recipe, "precision"),
    bos: BosOption = None,
    log_every: Annotated[int, typer.Option(help="Off a terminal, a progress line every N steps.")] = 10,
    device: str = "auto",
    trust_remote_code: bool = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished target at --out.")] = False,
) -> None:
    """Fine-tune a base model on the members of a corpus split (SPEC §2-3), writing a target directory."""
    from ltmia.artefacts import read_manifest
    from ltmia.data import corpus_splits
    from ltmia.finetune import finetune as run_finetune
    from ltmia.progress import step_bar

    recipe = Recipe(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=cast(Literal["adamw", "sgd"], optimizer),
        momentum=momentum,
        schedule=cast(Literal["constant", "cosine", "linear"], schedule),
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        lora=lora,
        lora_targets=tuple(lora_targets.split(",")) if lora_targets else None,
        precision=cast(PrecisionSetting, precision),
        seed=seed,
    )
    splits = corpus_splits(
        corpus,
        members,
        val,
        non_members,
        seed,
        column=column,
        kind=cast(Literal["text", "code"] | None, kind),
    )
    with step_bar(console, log_every) as bar:
        target = run_finetune(
            base,
            splits,
            out,
            recipe,
            bos=bos,
            device=device,
            trust_remote_code=trust_remote_code,
            on_step=bar.task("fine-tune"),
            overwrite=overwrite,
        )
    manifest = cast(dict, read_manifest(target))  # finetune wrote it
    console.print(
        f"target written to {target} (best epoch {manifest['best_epoch']}, {manifest['seconds']:.0f} s, "
        f"{manifest['recipe']['precision']}, bos {manifest.get('bos', 'never')})"
    )


# ---------------------------------------------------------------------------------------------- extract
@app.command("extract")
def extract_command(
    target: Annotated[Path, typer.Option(help="Target directory written by ltmia finetune.")],
    out: Annotated[Path, typer.Option(help="Store directory to write (an interrupted run is continued).")],
    reference: Annotated[
        str | None,
        typer.Option(help=f"Reference model ({ModelHelp}); default the target's base (LoRA: adapters off)."),
    ] = None,
    batch_size: int = default(StoreSettings, "batch_size"),
    shard_size: Annotated[int, typer.Option(help="Texts per shard file.")] = default(
        StoreSettings, "shard_size"
    ),
    memory_budget_mib: Annotated[
        int, typer.Option(help="Bound on extraction memory beyond the models (logits + feature scratch).")
    ] = default(StoreSettings, "memory_budget_bytes") // 2**20,
    dtype: Annotated[str, typer.Option(help="float32 or float16 features (stats stay float32).")] = default(
        StoreSettings, "dtype"
    ),
    k: Annotated[int, typer.Option(help="Top/bottom-k tokens per position (SPEC §4).")] = default(
        StoreSettings, "k"
    ),
    precision: PrecisionOption = default(StoreSettings, "precision"),
    corpus: Annotated[str | None, typer.Option(help="Fine-tuning corpus if its recorded one moved.")] = None,
    column: Annotated[
        str | None,
        typer.Option(help="Text column of a table file or dataset (a+b: joined; a|b: first non-blank)."),
    ] = None,
    device: str = "auto",
    trust_remote_code: bool = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished store at --out.")] = False,
) -> None:
    """Write a target's feature store: LT-MIA features and baseline token stats of its members and
    non-members (SPEC §4-5)."""
    from ltmia.extract import extract_target
    from ltmia.progress import text_bar
    from ltmia.store import Store

    settings = StoreSettings(
        k=k,
        dtype=cast(Literal["float32", "float16"], dtype),
        shard_size=shard_size,
        batch_size=batch_size,
        precision=cast(PrecisionSetting, precision),
        memory_budget_bytes=memory_budget_mib * 2**20,
    )
    with text_bar(console, "target + reference") as on_texts:
        store = extract_target(
            target,
            out,
            settings,
            reference=reference,
            corpus=corpus,
            column=column,
            device=device,
            trust_remote_code=trust_remote_code,
            on_texts=on_texts,
            overwrite=overwrite,
        )
    manifest = Store(store).manifest
    console.print(f"store {store}: {manifest['n']} texts in {len(manifest['shards'])} shards")


# -------------------------------------------------------------------------------------------- baselines
@app.command()
def baselines(
    store: Annotated[Path, typer.Argument(help="Store directory written by ltmia extract.")],
    split: Annotated[str, typer.Option(help="Split to score: train, val, test, or all rows.")] = "test",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the numbers here.")] = None,
    attacks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated attacks, one-pass and costly (ltmia attacks lists them with their cost); "
            "default: every one-pass baseline."
        ),
    ] = None,
    shots: Annotated[int, typer.Option(help="Costly: texts per ReCaLL / Con-ReCall prefix.")] = default(
        CostlyOptions, "shots"
    ),
    prefix_source: Annotated[
        str, typer.Option(help="Costly: auto, split:<name>, corpus or corpus:<spec> (prefix shots).")
    ] = default(CostlyOptions, "prefix_source"),
    reference_corpus: Annotated[
        str | None, typer.Option(help="Costly: DC-PDD's reference corpus; default the target's.")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="Costly: an attack setting, attack.key=value (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Costly: seed of shots, augmentations and samples.")] = default(
        CostlyOptions, "seed"
    ),
    batch_size: Annotated[int, typer.Option(help="Costly: texts per forward pass.")] = default(
        CostlyOptions, "batch_size"
    ),
    device: str = "auto",
    trust_remote_code: bool = False,
) -> None:
    """Score a store's split with the baseline attacks (SPEC §5) and print SPEC §7's metrics; costly attacks
    (--attacks) load the store's target and reference once, after printing what they cost."""
    from ltmia.artefacts import write_json
    from ltmia.evaluation import baseline_scores, check_baselines_json, evaluation, render
    from ltmia.store import Store

    if json_out is not None:
        check_baselines_json(json_out)
    opened = Store(store)
    if attacks is None:
        scored = baseline_scores(opened, split)
    else:
        from ltmia.costly_scores import attack_scores, parse_params

        names = [name.strip() for name in attacks.split(",") if name.strip()]
        options = CostlyOptions(
            shots=shots,
            prefix_source=prefix_source,
            reference_corpus=reference_corpus,
            seed=seed,
            batch_size=batch_size,
            params=parse_params(param or []),
        )

        def on_costly(costly: list[str], n_texts: int) -> None:
            console.print(costly_table(costly, options, opened.manifest["seq_len"], n_texts))

        device_options: dict[str, Any] = dict(device=device, trust_remote_code=trust_remote_code)
        scored = attack_scores(opened, split, names, options, on_costly=on_costly, **device_options)
    result = evaluation(scored, f"Baselines on {store} ({split})")
    console.print(render(result.table(), "rich"))
    if json_out is not None:
        record = result.record()
        attacks_record = record.pop("metrics")
        write_json(json_out, {"store": str(store), "split": split, "attacks": attacks_record, **record})


def costly_table(names: list[str], options, seq_len: int, n_texts: int) -> Table:
    """What each costly attack will cost on ``n_texts`` texts, before any model is loaded."""
    from ltmia.attacks.costly import PLAIN_PASS
    from ltmia.costly_scores import costs

    table = Table(
        "attack", "extra work per text", "~ shared passes", title=f"Costly attacks on {n_texts} texts"
    )
    priced = costs(names, options, seq_len)
    if any(cost.plain_pass for cost in priced.values()):
        priced = {"(plain pass, once)": PLAIN_PASS, **priced}
    for name, cost in priced.items():
        per_text = cost.shared_passes(seq_len)
        table.add_row(name, cost.describe(), f"{per_text:.1f} per text, {per_text * n_texts:,.0f} in all")
    return table


@app.command("attacks")
def attacks_list() -> None:
    """List every attack: the one-pass baselines (free: they read the shared pass) and the costly ones."""
    from ltmia.attacks import ATTACKS
    from ltmia.attacks.costly import COSTLY_ATTACKS
    from ltmia.attacks.papers import ONE_PASS_SOURCES
    from ltmia.costly_scores import costs
    from ltmia.data import SEQ_LEN

    table = Table("attack", "cost per text (defaults, L = 128)", "source", title="Membership attacks")
    for name in ATTACKS:
        table.add_row(name, "none: reads the shared pass", ONE_PASS_SOURCES.get(name, "-"))
    for name, cost in costs(COSTLY_ATTACKS.names(), CostlyOptions(), SEQ_LEN).items():
        price = f"{cost.describe()} (~{cost.shared_passes(SEQ_LEN):.1f} shared passes)"
        table.add_row(name, price, COSTLY_ATTACKS.get(name).source)
    console.print(table)


# ------------------------------------------------------------------------------------------------ train
@app.command("train")
def train_command(
    stores: Annotated[list[Path], typer.Argument(help="Feature stores (one per combo) to train on.")],
    out: Annotated[Path, typer.Option(help="Classifier directory to write.")],
    variant: Annotated[str, typer.Option(help="transformer, or an ablation variant (SPEC §6).")] = default(
        ClassifierConfig, "variant"
    ),
    epochs: int = default(TrainSettings, "epochs"),
    warmup_epochs: Annotated[
        int, typer.Option(help="Linear warmup, then cosine (at most --epochs).")
    ] = default(TrainSettings, "warmup_epochs"),
    batch_size: int = default(TrainSettings, "batch_size"),
    micro_batch_size: Annotated[
        int, typer.Option(help="Rows per forward pass (gradients accumulate).")
    ] = default(TrainSettings, "micro_batch_size"),
    groups: Annotated[
        str | None, typer.Option(help="Feature groups to keep, e.g. comparison,target.")
    ] = None,
    score_inputs: Annotated[
        str | None,
        typer.Option(
            help="Baseline scores the classifier also reads, e.g. ez_mia,wbc,ref_loss (not in SPEC §6)."
        ),
    ] = None,
    memory_budget_mib: Annotated[int, typer.Option(help="Bound on the feature rows held at once.")] = default(
        TrainSettings, "memory_budget_bytes"
    )
    // 2**20,
    seed: int = default(TrainSettings, "seed"),
    device: str = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace a classifier at --out.")] = False,
) -> None:
    """Train the LT-MIA classifier on the train rows of feature stores, keeping the epoch with the best
    validation AUC (SPEC §6)."""
    from ltmia.classifier import LTMIA
    from ltmia.classifier.checkpoint import check_new_output
    from ltmia.progress import epoch_bar

    check_new_output(out, overwrite)
    classifier = LTMIA(
        variant,
        groups=groups.split(",") if groups else None,
        score_inputs=tuple(score_inputs.split(",")) if score_inputs else (),
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        batch_size=batch_size,
        micro_batch_size=micro_batch_size,
        memory_budget_bytes=memory_budget_mib * 2**20,
        seed=seed,
        device=device,
    )
    with epoch_bar(console, epochs) as on_epoch:
        classifier.fit(stores, on_epoch=on_epoch)
    path = classifier.save(out, overwrite=overwrite)
    best = f"best epoch {classifier.best_epoch_}, val AUC {classifier.best_val_auc_:.4f}"
    console.print(f"classifier written to {path} ({best})")


@app.command("import-published")
def import_published_command(
    checkpoint: Annotated[Path, typer.Argument(help="The published classifier file (mia_combined_400k.pt).")],
    out: Annotated[Path, typer.Option(help="Classifier directory to write (safetensors + JSON).")],
) -> None:
    """Convert the published LT-MIA classifier (SPEC §8) into an ltmia classifier directory, read without
    unpickling anything but tensors, plain values and numpy scalars; use it with evaluate / audit
    --classifier."""
    from ltmia.classifier.published import import_published

    path = import_published(checkpoint, out)
    console.print(f"published classifier written to {path}; use it with --classifier {path}")


# ------------------------------------------------------------------------------------------------ study
CacheOption = Annotated[Path, typer.Option(help="Stage cache, shared by studies (keyed by inputs).")]
SeedOption = Annotated[int | None, typer.Option(help="Override the study's split seed.")]
GroupOption = Annotated[
    list[str] | None,
    typer.Option("--group", help="Only this group (repeat for more); default all. Stage keys stay the same."),
]
ClassifierNameOption = Annotated[
    list[str] | None,
    typer.Option("--classifier", help="Only this classifier (repeat for more); default all."),
]


@study_app.command("plan")
def study_plan(
    config: Annotated[
        str, typer.Argument(help="A shipped config name (demo, offline-full, paper, ...) or a .toml file.")
    ],
    cache: CacheOption = Path("runs/cache"),
    seed: SeedOption = None,
    group: GroupOption = None,
    classifier: ClassifierNameOption = None,
) -> None:
    """Validate a study config and list its stages with what is already cached; runs nothing."""
    from ltmia.study.config import load_config
    from ltmia.study.runner import status
    from ltmia.study.stages import plan

    study = plan(load_config(config, seed, group or (), classifier or ()))
    title = f"study {study.config.name}"
    table = Table("#", "stage", "kind", "cached", f"output (under {cache})", title=title)
    rows = status(study, cache)
    for index, (stage, done) in enumerate(rows, start=1):
        table.add_row(str(index), stage.label, stage.kind, "yes" if done else "no", stage.path)
    console.print(table)
    todo = sum(not done for _, done in rows)
    console.print(
        f"{len(rows)} stages, {len(rows) - todo} cached, {todo} to run; "
        f"config hash {study.config.config_hash[:16]}"
    )


@study_app.command("run")
def study_run(
    config: Annotated[str, typer.Argument(help="A shipped config name or a .toml file.")],
    cache: CacheOption = Path("runs/cache"),
    results: Annotated[
        Path | None, typer.Option(help="Results directory; default results/<study name>.")
    ] = None,
    seed: SeedOption = None,
    group: GroupOption = None,
    classifier: ClassifierNameOption = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, ...")] = "auto",
    backend: Annotated[
        str, typer.Option(help="local (one stage at a time) or ray (docs/scaling.md).")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address; default: start Ray on this machine.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="CPUs of the Ray started here; default all.")] = None,
) -> None:
    """Run every unfinished stage of a study, then write its tables and plots; --group / --classifier run
    and report only part of it (a long study reported group by group; the whole study reuses the part)."""
    options = dict(groups=group or (), classifiers=classifier or ())
    _run_study(config, cache, results, seed, device, backend, address, workers, **options)


@study_app.command("report")
def study_report(
    results: Annotated[Path, typer.Argument(help="A study's results directory (with its results.json).")],
) -> None:
    """Render a study's summary.md and group tables again from its results.json alone; numbers without an
    interval (per-text scores not kept) get approximate ones, marked ≈."""
    from ltmia.study.report import rerender, rich_table

    table = rerender(results)
    console.print(rich_table(table, f"AUC per group, {results}"))
    console.print(f"re-rendered {results}/summary.md and its group tables from results.json")


@study_app.command("export-classifier")
def study_export_classifier(
    config: Annotated[str, typer.Argument(help="A shipped config name or a .toml file.")],
    classifier: Annotated[str, typer.Argument(help="The name of one of its [classifiers].")],
    out: Annotated[Path, typer.Option(help="A new directory for the classifier (for --classifier DIR).")],
    cache: CacheOption = Path("runs/cache"),
    results: Annotated[
        str | None, typer.Option(help="Where the study's results are, recorded in study.json.")
    ] = None,
) -> None:
    """Copy a classifier a study trained out of its cache, with study.json (what made it)."""
    from ltmia.study.export import export_classifier

    path = export_classifier(config, classifier, cache, out, results)
    console.print(f"classifier {classifier} of {config} in {path} (use it with --classifier {path})")


def _run_study(
    config: str,
    cache: Path,
    results: Path | None,
    seed: int | None,
    device: str,
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
    groups: Sequence[str] = (),
    classifiers: Sequence[str] = (),
) -> None:
    from ltmia.study.report import rich_table
    from ltmia.study.run import run_study

    def on_plan(study, cached: int) -> None:
        console.print(
            f"study {study.config.name}: {len(study.stages)} stages, {cached} cached (cache {cache})"
        )

    def on_stage(index: int, total: int, stage, event: str) -> None:
        if event != "cached":
            console.print(
                f"[{index}/{total}] {stage.label}: {event}{' s' if event.startswith('done') else ''}"
            )

    options: dict[str, Any] = dict(device=device, backend=backend, address=address, workers=workers)
    options.update(groups=groups, classifiers=classifiers)
    done = run_study(config, cache, results, seed=seed, on_plan=on_plan, on_stage=on_stage, **options)
    console.print(rich_table(done.table, f"AUC per group, study {done.plan.config.name}"))
    console.print(f"results in {done.results}/ (summary.md, results.json, groups/); {done.seconds:.0f} s")


# ------------------------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    stores: Annotated[list[Path], typer.Argument(help="Store directories written by ltmia extract.")],
    classifier: Annotated[Path | None, typer.Option(help=CLASSIFIER_HELP)] = None,
    out: Annotated[Path, typer.Option(help="Where the tables and ROC plots go.")] = Path("runs/evaluate"),
    split: Annotated[str, typer.Option(help="Split to score: test, val, train or all rows.")] = "test",
    group: Annotated[str | None, typer.Option(help="Name for the pooled table of all stores.")] = None,
) -> None:
    """Score stores with LT-MIA and every baseline: JSON + markdown per store and pooled, log-log ROC PNGs."""
    from ltmia.classifier import LTMIA, check_store_compatible
    from ltmia.classifier.checkpoint import classifier_dir
    from ltmia.evaluation import evaluate_stores, render
    from ltmia.store import Store

    model = LTMIA.load(classifier_dir(classifier))
    opened = [Store(path) for path in stores]
    for store in opened:
        check_store_compatible(model.record_, store)
    for result in evaluate_stores(opened, out, model, split, group).values():
        console.print(render(result.table(), "rich"))
    console.print(f"tables and ROC plots in {out}/")


# ------------------------------------------------------------------------------------------------ audit
@app.command()
def audit(
    target: Annotated[
        str, typer.Option(help="Fine-tuned model: directory, LoRA adapter dir, hub id or .gguf.")
    ],
    texts: Annotated[
        str, typer.Option(help="Candidate texts: .txt/.jsonl/.csv/.parquet file, or - (stdin).")
    ],
    reference: Annotated[
        str | None, typer.Option(help="Its base model; default: a LoRA adapter's base (adapters disabled).")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Known labels, one per text (1/0 or member/non-member): adds metrics.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory (an interrupted audit resumes).")] = Path(
        "runs/audit"
    ),
    column: Annotated[str | None, typer.Option(help="Text column of a .jsonl/.csv/.parquet file.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="txt, jsonl or csv (for stdin).")] = None,
    classifier: Annotated[Path | None, typer.Option(help=CLASSIFIER_HELP)] = None,
    kind: Annotated[str, typer.Option(help="text, or code (code keeps its last tokens, SPEC §2).")] = "text",
    explain: Annotated[int, typer.Option(help="Explain the top N texts token by token (0: none).")] = 20,
    precision: PrecisionOption = default(StoreSettings, "precision"),
    bos: BosOption = None,
    batch_size: int = default(StoreSettings, "batch_size"),
    memory_budget_mib: Annotated[
        int, typer.Option(help="Bound on extraction memory beyond the models (logits + feature scratch).")
    ] = default(StoreSettings, "memory_budget_bytes") // 2**20,
    device: str = "auto",
    trust_remote_code: Annotated[
        bool, typer.Option(help="Allow model code from the model's repository (review it first).")
    ] = False,
    non_members: Annotated[
        str | None,
        typer.Option(
            help="Texts known NOT to be trained on (same formats as --texts): adds p-values, a selection at "
            "an FDR and a set-level verdict."
        ),
    ] = None,
    fdr: Annotated[
        float | None, typer.Option(help="With --non-members: select candidates at this FDR (default 0.05).")
    ] = None,
    fpr: Annotated[
        float | None, typer.Option(help="With --non-members: select at this false-positive rate instead.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="With --non-members: level of the set-level test.")] = 0.05,
    attack: Annotated[
        str, typer.Option(help="With --non-members: the attack whose p-values select (fix it beforehand).")
    ] = "lt_mia",
) -> None:
    """Score candidate texts for membership in a fine-tuned model: LT-MIA + every baseline, per-token
    explanations, report.html."""
    from ltmia.audit import AuditSettings, audit_files, evidence_settings
    from ltmia.progress import text_bar

    evidence = evidence_settings(fdr, fpr, alpha, attack, with_non_members=non_members is not None)
    settings = AuditSettings(
        classifier=classifier,
        kind=cast(Literal["text", "code"], kind),
        bos=bos,
        precision=precision,
        explain=explain,
        batch_size=batch_size,
        memory_budget_bytes=memory_budget_mib * 2**20,
        device=device,
        trust_remote_code=trust_remote_code,
        evidence=evidence,
    )
    with text_bar(console, "target + reference") as on_texts:
        result = audit_files(
            target,
            texts,
            out,
            reference=reference,
            labels=labels,
            column=column,
            fmt=fmt,
            non_members=non_members,
            settings=settings,
            on_texts=on_texts,
        )
    _print_audit(result)


def _print_audit(result) -> None:
    from ltmia.audit.html import skipped_note
    from ltmia.evaluation import render
    from ltmia.progress import printable

    if "evidence" in result.record:  # first: what the known non-members allow one to claim
        found = result.record["evidence"]
        console.print(f"[bold]{escape(found['selected'])}[/]")
        console.print(f"set-level verdict: {escape(found['verdict'])}")
        known = found.get("non_member_texts", {})
        console.print(
            f"known non-members: {found['non_members']} scored{skipped_note(known.get('skipped', []))}"
        )
    counts = result.counts
    flagged = ", ".join(
        f"{counts[name]} {name}" for name in ("short", "truncated", "duplicate") if name in counts
    )
    skipped = result.record.get("texts", {}).get("skipped", [])
    where = f" (input #{', #'.join(map(str, skipped[:10]))}{', ...' if len(skipped) > 10 else ''})"
    console.print(
        f"{len(result.table)} texts scored, {counts['skipped_empty']} empty skipped"
        + (where if skipped else "")
        + (f"; flagged: {flagged}" if flagged else "")
    )
    evidence = "evidence" in result.record
    marks = ["q-value", "selected"] if evidence else []
    table = Table(
        "rank",
        "text #",
        "LT-MIA score",
        "ref_loss",
        "loss",
        *marks,
        "flags",
        "text",
        title="Most member-like",
    )
    for entry in result.table[:10]:
        values = [f"{entry['q_value']:.3g}", "yes" if entry["selected"] else ""] if evidence else []
        table.add_row(
            str(entry["rank"]),
            str(entry["index"]),
            f"{entry['lt_mia_score']:.3f}",
            f"{entry['ref_loss']:.3f}",
            f"{entry['loss']:.3f}",
            *values,
            " ".join(entry["flags"]),
            escape(printable(entry["text"][:60])),
        )
    console.print(table)
    if result.metrics is not None:
        console.print(render(result.metrics.table(), "rich"))
    console.print(f"scores (a ranking, not probabilities) and report.html in {result.out}/")


# ------------------------------------------------------------------------------------------------- demo
@app.command()
def demo(
    cache: CacheOption = Path("runs/cache"),
    results: Annotated[Path, typer.Option(help="Where the demo's tables and plots go.")] = Path("runs/demo"),
) -> None:
    """The built-in demo study: zero-shot transfer of LT-MIA to held-out families on a held-out corpus."""
    _run_study("demo", cache, results, None, "auto")
    console.print(
        "The demo runs ltmia's toy zoo (~1.3 M parameters) to stay within 10 minutes. Real pretrained LMs "
        "(SmolLM2-135M, Gemma-3-270M; make install-real): ltmia study run offline-real (CPU hours); the "
        "shipped classifier's measured real-model groups are in results/offline-real/."
    )


def main() -> None:
    """Console entry point: every error becomes one line on stderr (module docstring); ``--debug`` and
    ``--verify`` may stand anywhere on the command line."""
    from rich.logging import RichHandler

    from ltmia.progress import printable

    args = sys.argv[1:]
    sys.argv[1:] = [*(a for a in args if a in GLOBAL_FLAGS), *(a for a in args if a not in GLOBAL_FLAGS)]
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console)])
    logging.getLogger("ltmia").setLevel(logging.INFO)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # ltmia shows its own progress
    errors = Console(stderr=True, soft_wrap=True)
    try:
        app()
    except Exception as error:
        if "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        lines = [line for line in str(error).splitlines() if line.strip()]
        text = printable(lines[0].strip() if lines else type(error).__name__)
        if isinstance(error, LtmiaError):
            errors.print(f"[bold red]error:[/] {escape(text)}", highlight=False)
            sys.exit(2)
        errors.print(
            f"[bold red]error:[/] {escape(type(error).__name__)}: {escape(text)} (unexpected: run again "
            "with --debug for the traceback, and please report it)",
            highlight=False,
        )
        sys.exit(1)
