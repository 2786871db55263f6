"""Build the offline model zoo: one tokenizer, then every architecture pretrained by ltmia itself.

Without the hub there are no pretrained bases, so ltmia makes them: a byte-level BPE tokenizer and tiny
models pretrained on the *pretraining pool*, a hash-selected share of each built-in corpus that is disjoint
from every member/non-member pool (``ltmia.corpora.corpus_texts``). The reference model has therefore seen
the style of each corpus but neither class of any combo, as a hub base model would.

Layout of a zoo directory::

    zoo.json            settings + pool fingerprint (a zoo is built with one set of settings)
    tokenizer/          the shared tokenizer
    <arch>/             save_pretrained model + tokenizer + manifest.json (pretraining log)

Each architecture is its own atomic artefact, so an interrupted build resumes at the first unfinished one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import torch
from torch import nn

from ltmia.artefacts import building, read_manifest, versions, write_json, write_manifest
from ltmia.corpora import CORPORA, Kind, corpus_texts
from ltmia.data import encode, filter_texts, seeded_order, text_hash
from ltmia.device import resolve_device
from ltmia.errors import OutputExistsError
from ltmia.finetune import train_causal_lm
from ltmia.settings.zoo import ZooSettings
from ltmia.zoo.architectures import ARCHITECTURES, build_model, count_parameters
from ltmia.zoo.tokenizer import train_tokenizer

log = logging.getLogger(__name__)


@dataclass
class Pool:
    """The pretraining texts, each with its corpus kind (code is truncated on the left)."""

    texts: list[str]
    kinds: list[Kind]

    def fingerprint(self) -> str:
        return hashlib.sha256("".join(text_hash(t) for t in self.texts).encode()).hexdigest()


def pretraining_pool(corpora: Sequence[str], texts_per_corpus: int, seed: int) -> Pool:
    """Up to ``texts_per_corpus`` seeded-random texts from each corpus's pretraining share."""
    texts, kinds = [], []
    for name in corpora:
        corpus = CORPORA.get(name)
        candidates = filter_texts(corpus_texts(corpus, pool="pretrain"))
        chosen = [candidates[i] for i in seeded_order(candidates, seed)[:texts_per_corpus]]
        texts += chosen
        kinds += [corpus.kind] * len(chosen)
    order = seeded_order(texts, seed)  # mix corpora so the validation slice samples all of them
    return Pool([texts[i] for i in order], [kinds[i] for i in order])


def encode_pool(tokenizer, pool: Pool, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode each kind with its own truncation side, keeping the pool's order."""
    input_ids = torch.empty((len(pool.texts), seq_len), dtype=torch.long)
    attention_mask = torch.empty_like(input_ids)
    for kind in set(pool.kinds):
        rows = [i for i, k in enumerate(pool.kinds) if k == kind]
        ids, mask = encode(tokenizer, [pool.texts[i] for i in rows], kind, seq_len)
        input_ids[rows], attention_mask[rows] = ids, mask
    return input_ids, attention_mask


def _settings_json(settings: ZooSettings, pool: Pool) -> dict:
    return {
        "settings": settings.record(),
        "pool": {"texts": len(pool.texts), "fingerprint": pool.fingerprint()},
    }


def _claim(out: Path, settings: ZooSettings, pool: Pool) -> None:
    """Record the settings of a new zoo, or check that an existing zoo was built with the same ones."""
    wanted = _settings_json(settings, pool)
    path = out / "zoo.json"
    if path.exists():
        if json.loads(path.read_text()) != json.loads(json.dumps(wanted)):
            raise OutputExistsError(
                f"{out} holds a zoo built with other settings (see {path}); use another --out directory"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise OutputExistsError(f"{out} exists and is not an ltmia zoo; choose another --out directory")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, wanted)


def build_tokenizer(out: Path, pool: Pool, vocab_size: int):
    """Train the shared tokenizer once; later calls load it."""
    from transformers import AutoTokenizer

    directory = out / "tokenizer"
    if read_manifest(directory) is None:
        tokenizer = train_tokenizer(pool.texts, vocab_size)
        with building(directory, what="tokenizer") as scratch:
            tokenizer.save_pretrained(str(scratch))
            write_manifest(scratch, {"artefact": "ltmia-tokenizer", "vocab_size": len(tokenizer)})
    return AutoTokenizer.from_pretrained(str(directory))


def pretrain_architecture(
    arch: str,
    out: Path,
    tokenizer,
    data: tuple[torch.Tensor, torch.Tensor],
    settings: ZooSettings,
    device: str = "auto",
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Pretrain one architecture from scratch on the encoded pool and save it as ``out/<arch>``."""
    directory = out / arch
    if read_manifest(directory) is not None:
        return directory
    model = build_model(
        arch,
        len(tokenizer),
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
        settings.size,
        seed=settings.seed,
    )
    cast(nn.Module, model).to(resolve_device(device))
    n_val = max(1, int(len(data[0]) * settings.val_fraction))
    train = (data[0][n_val:], data[1][n_val:])
    val = (data[0][:n_val], data[1][:n_val])
    started = time.perf_counter()
    history = train_causal_lm(model, train, val, settings.recipe, on_step)
    with building(directory, what="zoo model") as scratch:
        model.save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        write_manifest(
            scratch,
            {
                "artefact": "ltmia-zoo-model",
                "architecture": arch,
                "family": ARCHITECTURES.get(arch).family,
                "parameters": count_parameters(model),
                "pretrain_log": asdict(history),
                "seconds": time.perf_counter() - started,
                "versions": versions(),
            },
        )
    return directory


def build_zoo(
    out: Path,
    archs: Sequence[str],
    settings: ZooSettings | None = None,
    device: str = "auto",
    on_arch: Callable[[str], Callable[[int, float], None] | None] | None = None,
) -> dict[str, Path]:
    """Build (or finish building) a zoo with the given architectures; returns arch -> model directory."""
    settings = settings or ZooSettings()
    for arch in archs:
        ARCHITECTURES.get(arch)  # unknown names fail before any work
    out = Path(out)
    pool = pretraining_pool(settings.corpora, settings.texts_per_corpus, settings.seed)
    _claim(out, settings, pool)
    tokenizer = build_tokenizer(out, pool, settings.vocab_size)
    data = encode_pool(tokenizer, pool, settings.seq_len)
    built = {}
    for arch in archs:
        log.info("pretraining %s on %d texts", arch, len(pool.texts))
        on_step = on_arch(arch) if on_arch is not None else None
        built[arch] = pretrain_architecture(arch, out, tokenizer, data, settings, device, on_step)
    return built
