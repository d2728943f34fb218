"""polarity: sample polarity in reinforcement learning with verifiable rewards (RLVR).

The library behind the Snakemake workflow: data preparation, math-verify scoring, the
polarity algorithm family (GRPO, Dr.GRPO, DAPO, PSR, NSR, W-REINFORCE, A3PO, POPO),
a local trainer, evaluation metrics and report loaders.
"""

__version__ = "0.1.0"
