"""Where each one-pass baseline (SPEC §5) comes from, for listings (``ltmia attacks``, the README table).

Costly attacks carry their source in their registry entry (``ltmia.attacks.costly``).
"""

from __future__ import annotations

ONE_PASS_SOURCES = {
    "loss": "Yeom et al. 2018, Privacy Risk in Machine Learning (CSF)",
    "zlib": "Carlini et al. 2021, Extracting Training Data from Large Language Models (USENIX Security)",
    "min_k": "Shi et al. 2024, Detecting Pretraining Data from Large Language Models (ICLR)",
    "min_k_pp": "Zhang et al. 2025, Min-K%++: Improved Baseline for Pre-Training Data Detection (ICLR)",
    "ref_loss": "Carlini et al. 2021 (reference-model calibration; USENIX Security)",
    "ez_mia": "Ilić et al. 2026, Powerful Training-Free Membership Inference Against Autoregressive "
    "Language Models (arXiv 2601.12104)",
    "wbc": "Chen et al. 2026, Window-based Membership Inference Attacks Against Fine-tuned Large Language "
    "Models (USENIX Security; arXiv 2601.02751)",
}
