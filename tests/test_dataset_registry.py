"""The dataset registry (polarity.data.registry) against the copies of its names elsewhere.

The config schema's ``train_data.name`` and ``evaluate.benchmarks`` enums and the data rules'
file-name patterns and wildcard constraints (workflow/rules/data.smk) name the registry's
datasets; they are read here as text (YAML / Snakemake source) and must name exactly the
registry's entries, plus the synthetic task's training set (``synthetic-arith``, which the
synthetic data stage makes and the registry does not list). Also: the registry imports cheaply
(Snakemake imports it when it builds the DAG) and the data modules keep the stage order.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from polarity.data import registry
from polarity.data.registry import (
    ANSWER_RULES,
    BENCHMARKS,
    DATASETS,
    HUB_BENCHMARKS,
    TRAIN_SETS,
    Dataset,
    get_benchmark,
    get_dataset,
    get_train_set,
)
from polarity.data.rows import PROMPT_TEMPLATES

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
RULES = ROOT / "workflow" / "rules"
SRC = ROOT / "src" / "polarity"


# --------------------------------------------------------------------------------------------
# Reading the workflow's text


def _common_smk() -> str:
    return (RULES / "common.smk").read_text()


def synthetic_name() -> str:
    """common.smk's ``SYNTHETIC``: the synthetic task's name (its files' prefix)."""
    m = re.search(r'^SYNTHETIC\s*=\s*("[^"]*"|\'[^\']*\')\s*$', _common_smk(), re.M)
    assert m, "common.smk defines no SYNTHETIC = '...'"
    return ast.literal_eval(m.group(1))


def smk_imports() -> dict[str, str]:
    """``{name: module}`` for common.smk's ``from <module> import ...`` lines."""
    found = {}
    for m in re.finditer(r"^from\s+([\w.]+)\s+import\s+(.+)$", _common_smk(), re.M):
        for name in m.group(2).strip("()").split(","):
            found[name.strip()] = m.group(1)
    return found


# Registry names the data rules use by reference ("|".join(HUB_BENCHMARKS)), seen while parsing.
_REFERENCED: set[str] = set()


def _eval_constraint(expr: str) -> str:
    """A wildcard constraint's regex: a string literal, or ``"|".join(NAME)`` of a registry
    name (``test_common_smk_imports_the_registry`` checks where common.smk takes it from)."""
    expr = expr.strip().rstrip(",").strip()
    m = re.fullmatch(r"""(["'])\|\1\.join\((\w+)\)""", expr)
    if m:
        name = m.group(2)
        assert name in registry.__all__, f"data.smk joins {name}, not a registry name"
        _REFERENCED.add(name)
        return "|".join(getattr(registry, name))
    value = ast.literal_eval(expr)
    assert isinstance(value, str), expr
    return value


def data_rules() -> dict[str, dict]:
    """data.smk's rules: ``{rule: {"outputs": [file-name pattern], "constraints": {w: re}}}``.

    Output patterns are the string literals of the ``output:`` section, f-strings with
    ``{SYNTHETIC}`` filled in from common.smk.
    """
    text = (RULES / "data.smk").read_text()
    synthetic = synthetic_name()
    rules: dict[str, dict] = {}
    for block in re.split(r"^(?=rule \w+:)", text, flags=re.M):
        head = re.match(r"rule (\w+):", block)
        if not head:
            continue
        sections: dict[str, list[str]] = {}
        current = None
        for line in block.splitlines()[1:]:
            sec = re.match(r"^    (\w+):\s*(.*)$", line)
            if sec:
                current = sec.group(1)
                sections[current] = [sec.group(2)] if sec.group(2) else []
            elif current and line.startswith("        "):
                sections[current].append(line.strip())
        outputs = []
        for line in sections.get("output", []):
            for f, body in re.findall(r"""(f?)"([^"]*)\"""", line):
                outputs.append(body.replace("{SYNTHETIC}", synthetic) if f else body)
        constraints = {}
        for line in sections.get("wildcard_constraints", []):
            key, _, expr = line.partition("=")
            constraints[key.strip()] = _eval_constraint(expr)
        rules[head.group(1)] = {"outputs": outputs, "constraints": constraints}
    return rules


def _pattern_regex(pattern: str, constraints: dict[str, str]) -> re.Pattern:
    """A Snakemake output pattern as a regex over file names (a wildcard without a
    constraint matches any name without a ``/``)."""
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)\}", pattern):
        out += re.escape(pattern[pos : m.start()])
        out += f"(?:{constraints.get(m.group(1), '[^/]+')})"
        pos = m.end()
    return re.compile(out + re.escape(pattern[pos:]))


def producers(file_name: str) -> list[str]:
    """The data rules with an output matching ``file_name``."""
    found = []
    for rule, spec in data_rules().items():
        for pattern in spec["outputs"]:
            if _pattern_regex(pattern, spec["constraints"]).fullmatch(file_name):
                found.append(rule)
    return found


def _schema() -> dict:
    return yaml.safe_load(SCHEMA.read_text())["properties"]


# --------------------------------------------------------------------------------------------
# The schema


def test_schema_train_data_names_are_the_registrys():
    name = _schema()["train_data"]["properties"]["name"]
    assert name["enum"] == [synthetic_name(), *TRAIN_SETS]
    assert name["default"] in name["enum"]


def test_schema_benchmark_names_are_the_registrys():
    bench = _schema()["evaluate"]["properties"]["benchmarks"]
    assert bench["items"]["enum"] == list(BENCHMARKS)
    assert set(bench["default"]) <= set(BENCHMARKS)


def test_schema_templates_are_the_rows_templates():
    for section in ("train_data", "evaluate"):
        enum = _schema()[section]["properties"]["template"]["enum"]
        assert set(enum) == {*PROMPT_TEMPLATES, None}, section
    for d in DATASETS.values():
        assert d.template is None or d.template in PROMPT_TEMPLATES, d.name


# --------------------------------------------------------------------------------------------
# data.smk


def test_data_rules_are_parsed():
    rules = data_rules()
    assert {"prepare_synthetic", "prepare_hub_train", "prepare_benchmark"} <= set(rules)
    assert rules["prepare_hub_train"]["outputs"] == ["{dataset}-train.parquet"]
    assert rules["prepare_benchmark"]["outputs"] == ["{benchmark}.parquet"]


def test_common_smk_imports_the_registry():
    data_rules()  # the names data.smk joins
    imports = smk_imports()
    assert _REFERENCED, "data.smk joins no registry name"
    for name in sorted(_REFERENCED):
        assert imports.get(name) == "polarity.data.registry", (
            f"common.smk imports {name} from {imports.get(name)}, "
            "not from the registry (polarity.data.registry)"
        )


def test_hub_train_constraint_is_the_registrys():
    regex = data_rules()["prepare_hub_train"]["constraints"]["dataset"]
    assert sorted(regex.split("|")) == sorted(TRAIN_SETS)


def test_hub_benchmark_constraint_is_the_registrys():
    regex = data_rules()["prepare_benchmark"]["constraints"]["benchmark"]
    assert regex.split("|") == list(HUB_BENCHMARKS)


def test_every_train_data_name_has_exactly_one_rule():
    synthetic = synthetic_name()
    for name in _schema()["train_data"]["properties"]["name"]["enum"]:
        want = ["prepare_synthetic"] if name == synthetic else ["prepare_hub_train"]
        assert producers(f"{name}-train.parquet") == want, name


def test_every_benchmark_has_exactly_one_rule():
    for name, d in BENCHMARKS.items():
        want = ["prepare_benchmark"] if d.is_hub else ["prepare_synthetic"]
        assert producers(f"{name}.parquet") == want, name


def test_synthetic_entries_are_the_synthetic_rules():
    synthetic = synthetic_name()
    made = {n for n, d in DATASETS.items() if d.source == "synthetic"}
    assert made == {f"{synthetic}-test"}
    assert synthetic not in DATASETS  # its training set is not a registry entry
    outputs = data_rules()["prepare_synthetic"]["outputs"]
    assert f"{synthetic}-test.parquet" in outputs and f"{synthetic}-train.parquet" in outputs


def test_prepared_file_names_do_not_collide():
    files = [f"{n}-train.parquet" for n in TRAIN_SETS] + [f"{n}.parquet" for n in BENCHMARKS]
    files.append(f"{synthetic_name()}-train.parquet")
    assert len(set(files)) == len(files)
    for f in files:
        assert len(producers(f)) == 1, f


# --------------------------------------------------------------------------------------------
# The registry itself


def test_views_are_the_registry_by_role():
    assert set(DATASETS) == set(TRAIN_SETS) | set(BENCHMARKS)
    assert not set(TRAIN_SETS) & set(BENCHMARKS)
    assert all(d.role == "train" for d in TRAIN_SETS.values())
    assert all(d.role == "benchmark" for d in BENCHMARKS.values())
    assert HUB_BENCHMARKS == tuple(n for n, d in BENCHMARKS.items() if d.is_hub)
    for name, d in DATASETS.items():
        assert d.name == name and d.data_source == name and d.description
        if d.is_hub:
            assert d.answer_rule in ANSWER_RULES and d.hub_id and d.split
        assert get_dataset(name) is d and get_dataset(name, d.role) is d
    assert get_train_set("math") is TRAIN_SETS["math"]
    assert get_benchmark("aime25") is BENCHMARKS["aime25"]


def test_lookups_name_the_known_entries():
    with pytest.raises(KeyError, match="unknown dataset 'nope'.*math.*olympiadbench"):
        get_dataset("nope")
    with pytest.raises(KeyError, match="unknown training dataset 'math500'"):
        get_dataset("math500", "train")
    with pytest.raises(KeyError, match="unknown benchmark 'math'"):
        get_benchmark("math")
    with pytest.raises(ValueError, match="role"):
        get_dataset("math", "eval")


def test_entries_are_checked():
    hub = dict(hub_id="h", split="s", question_field="q", answer_field="a", template="plain")
    Dataset("ok", "train", "d", **hub)  # a hub training set needs no expected_rows
    with pytest.raises(ValueError, match="expected_rows"):
        Dataset("x", "benchmark", "d", **hub)
    with pytest.raises(ValueError, match="role"):
        Dataset("x", "eval", "d", **hub)
    with pytest.raises(ValueError, match="template"):
        Dataset("x", "train", "d", **{**hub, "template": None})
    with pytest.raises(ValueError, match="must all be named"):
        Dataset("x", "train", "d", configs=("a", None), **hub)
    with pytest.raises(ValueError, match="repeat"):
        Dataset("x", "train", "d", configs=("a", "a"), **hub)
    with pytest.raises(ValueError, match="configs"):
        Dataset("x", "train", "d", configs=(), **hub)
    Dataset("y", "benchmark", "d", source="synthetic", configs=(), answer_rule=None)


def test_registry_imports_cheaply():
    # Snakemake and the config checks import it: no pandas/pyarrow/datasets/torch.
    code = (
        "import sys, polarity.data.registry as r; "
        "heavy = {'torch', 'datasets', 'pyarrow', 'pandas', 'numpy'}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# The polarity modules a data module may import (stage order: data comes first).
_ALLOWED = {"polarity.files", "polarity.seeds", "polarity.settings", "polarity.reward", "polarity.data"}


def _polarity_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from ..files / from .rows
                base = "polarity" if node.level == 2 else "polarity.data"
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "polarity" or m.startswith("polarity.") or m == "torch"}


@pytest.mark.parametrize("path", sorted((SRC / "data").glob("*.py")), ids=lambda p: p.name)
def test_data_modules_keep_the_stage_order(path):
    for mod in _polarity_imports(path):
        assert any(mod == a or mod.startswith(a + ".") for a in _ALLOWED), (path.name, mod)


@pytest.mark.parametrize("name", ["registry", "answers", "sources", "hub"])
def test_data_modules_stay_small(name):
    assert len((SRC / "data" / f"{name}.py").read_text().splitlines()) < 500


def test_registry_module_exports():
    for name in ("DATASETS", "TRAIN_SETS", "BENCHMARKS", "HUB_BENCHMARKS", "Dataset"):
        assert name in registry.__all__
