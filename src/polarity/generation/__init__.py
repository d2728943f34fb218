"""Sampling responses from a policy: the transformers sampler (training and evaluation) and
the vLLM engine (evaluation on GPUs)."""
