"""ltmia: learned transfer membership inference on language models.

The pipeline, one module per step: corpora -> data (splits, tokenisation) -> zoo (tokenizer, architectures,
pretraining) -> finetune (targets) -> signals -> features / attacks -> metrics.
"""

__version__ = "0.1.0"
