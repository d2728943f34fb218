"""Small tensor helpers the algorithm tests share."""

from __future__ import annotations

import math

import torch

T_ = torch.tensor


def close(actual, expected, tol=1e-6):
    expected = torch.as_tensor(expected, dtype=torch.float64)
    return torch.allclose(torch.as_tensor(actual).double(), expected, atol=tol, rtol=tol)


def mask_from_lengths(lengths, width):
    return (torch.arange(width)[None, :] < T_(lengths)[:, None]).float()


def lp(probs):
    """log-probabilities from a nested list of probabilities."""
    return torch.log(T_(probs, dtype=torch.float32))


# sqrt(1/3): the unbiased std of a 4-group {1, 1, 0, 0} (deviations +-1/2: 4 * 1/4 / 3 = 1/3)
# and of a 3-group {1, 0, 0} (deviations 2/3, -1/3, -1/3: (4/9 + 1/9 + 1/9) / 2 = 1/3).
SQRT_THIRD = math.sqrt(1.0 / 3.0)
