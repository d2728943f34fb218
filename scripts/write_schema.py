"""Regenerate the registry-derived parts of workflow/schemas/config.schema.yaml.

The algorithm names and per-algorithm parameters come from polarity.algorithms.ALGORITHMS, the
dataset names from polarity.data.registry, the prompt templates from
polarity.data.rows.PROMPT_TEMPLATES and the extraction policies from polarity.reward.EXTRACTIONS; tests/test_config.py fails when they drift apart.
Usage: python scripts/write_schema.py
"""

from pathlib import Path

import yaml

from polarity.algorithms import ALGORITHMS, params_schema
from polarity.data.rows import PROMPT_TEMPLATES
from polarity.data.registry import BENCHMARKS, TRAIN_SETS
from polarity.reward import EXTRACTIONS

PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


def main() -> None:
    schema = yaml.safe_load(PATH.read_text())
    schema["properties"]["algorithms"]["items"]["enum"] = list(ALGORITHMS)
    params = params_schema()
    params["description"] = (
        "per-algorithm hyperparameters; generated from the registry by scripts/write_schema.py"
    )
    schema["properties"]["algorithm_params"] = params
    schema["properties"]["train_data"]["properties"]["name"]["enum"] = ["synthetic-arith", *TRAIN_SETS]
    evaluate = schema["properties"]["evaluate"]["properties"]
    evaluate["benchmarks"]["items"]["enum"] = list(BENCHMARKS)
    evaluate["template"]["enum"] = [*PROMPT_TEMPLATES, None]
    evaluate["extraction"]["enum"] = list(EXTRACTIONS)
    schema["properties"]["train"]["properties"]["extraction"]["enum"] = list(EXTRACTIONS)
    PATH.write_text(yaml.dump(schema, Dumper=_Dumper, sort_keys=False, width=100,
                              default_flow_style=None))


if __name__ == "__main__":
    main()
