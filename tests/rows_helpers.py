"""Reading prepared rows back in tests: plain Python objects from pandas/pyarrow values."""

from __future__ import annotations

import numpy as np
import pandas as pd


def plain(obj):
    """Python objects from what pandas/pyarrow hand back (arrays -> lists, numpy scalars)."""
    if isinstance(obj, np.ndarray):
        return [plain(x) for x in obj.tolist()]
    if isinstance(obj, (list, tuple)):
        return [plain(x) for x in obj]
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def records(frame: pd.DataFrame) -> list[dict]:
    return [plain(r) for r in frame.to_dict("records")]


def indices(frame: pd.DataFrame) -> list[int]:
    return [int(e["index"]) for e in frame["extra_info"]]
