"""Pretraining cost and quality of every zoo architecture at the default zoo settings.

Builds (or resumes) the zoo with ``ltmia.zoo.pretrain.build_zoo`` and records, per architecture, the
parameter count, wall-clock minutes and the loss after each epoch, in benchmarks/results/zoo_pretrain.json.

    .venv/bin/python benchmarks/zoo_pretrain.py [--zoo runs/zoo] [--no-build]
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch

from ltmia.artefacts import read_manifest, versions, write_json
from ltmia.zoo.architectures import ARCHITECTURES
from ltmia.zoo.pretrain import ZooSettings, build_zoo

RESULTS = Path(__file__).parent / "results" / "zoo_pretrain.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=Path("runs/zoo"))
    parser.add_argument("--no-build", action="store_true", help="only summarise what is already built")
    args = parser.parse_args()
    settings = ZooSettings()
    if not args.no_build:
        build_zoo(args.zoo, ARCHITECTURES.names(), settings)
    families = {}
    for arch in ARCHITECTURES.names():
        manifest = read_manifest(args.zoo / arch)
        if manifest is None:
            families[arch] = {"built": False}
            continue
        families[arch] = {
            "built": True,
            "family": manifest["family"],
            "parameters": manifest["parameters"],
            "minutes": round(manifest["seconds"] / 60, 2),
            "epochs": manifest["pretrain_log"]["epochs"],
        }
    RESULTS.parent.mkdir(exist_ok=True)
    write_json(
        RESULTS,
        {
            "settings": settings.record(),
            "machine": {
                "cpus": os.cpu_count(),
                "threads": torch.get_num_threads(),
                "arch": platform.machine(),
            },
            "versions": versions(),
            "note": "minutes are wall clock on a shared 2-core machine; other jobs ran beside some of them",
            "architectures": families,
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
