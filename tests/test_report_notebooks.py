"""The report notebooks: parameters, rendering to HTML on fake results, figures saved as files,
and the errors of a failing notebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from polarity.report import load, tables
from polarity.report.figures import FIGURES
from polarity.report.render import (
    NotebookExecutionError,
    count_figures,
    notebook_errors,
    render_notebook,
)

from .conftest import REPO
from .report_fixtures import make_demo_results, make_fake_results

NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return make_demo_results(tmp_path_factory)


def test_notebook_templates_have_parameters():
    for name in ("training", "evaluation"):
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1
        assert 'results_dir = "results/demo"' in tagged[0].source and 'study = "demo"' in tagged[0].source


@pytest.fixture(scope="module")
def rendered(results, tmp_path_factory):
    """Both notebooks executed once on the fake results (kernel cwd = the results' parent)."""
    out = tmp_path_factory.mktemp("report")
    paths = {}
    for name in ("training", "evaluation"):
        nb, html = out / f"{name}.ipynb", out / f"{name}.html"
        render_notebook(NOTEBOOKS / f"{name}.ipynb", nb, html,
                        {"results_dir": results.name, "study": "demo",
                         "figures_dir": str(out / "figures" / name)}, cwd=results.parent)
        paths[name] = (nb, html)
    return paths


@pytest.mark.parametrize("name, figures", [("training", 9), ("evaluation", 6)])
def test_notebooks_render(rendered, name, figures):
    nb, html = rendered[name]
    assert nb.is_file() and html.is_file()
    assert notebook_errors(nb) == []
    # training: accuracy/reward, reward-hacking monitor, entropy, length, n_pos/n_neg, groups,
    # A3PO, POPO, warm-up; evaluation: findings, pass@k curves, avg@n/pass@n/maj@n bars,
    # paired-difference forest plot, zero reasons, the lenient-only share
    assert count_figures(nb) == figures
    text = html.read_text()
    assert text.count("data:image/png;base64") >= figures
    assert "Traceback" not in text
    assert not list(nb.parent.glob(".*tmp*"))
    # the HTML is for readers: no code cells (the executed notebook keeps them)
    code = "from polarity.report import figures"
    assert code in "".join(c.source for c in nbformat.read(nb, as_version=4).cells)
    assert code not in text and "load.load_" not in text and "figures.show(" not in text
    # every figure of the report is also its own file (snakemake --report items)
    saved = sorted(p.stem for p in (nb.parent / "figures" / name).glob("*.png"))
    assert saved == sorted(FIGURES[name])
    assert all((nb.parent / "figures" / name / f"{n}.png").stat().st_size > 1000 for n in saved)


def test_evaluation_notebook_sections(rendered):
    nb = nbformat.read(rendered["evaluation"][0], as_version=4)
    text = "".join(c.source for c in nb.cells)
    for heading in ("## Findings", "## Contamination", "## pass@k curves", "## Final table",
                    "## avg@n, pass@n and maj@n", "## Paired comparison", "## Why answers score zero"):
        assert heading in text
    assert text.index("## Findings") < text.index("## pass@k curves")  # findings come first
    shown = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.outputs)
    assert "difference [95% CI]" in shown and "maj@n [95% CI]" in shown and "average" in shown
    assert "estimate [95% CI]" in shown and "verdict" in shown


def test_evaluation_without_base_answers_or_second_benchmark(tmp_path):
    root = make_fake_results(tmp_path / "r" / "one", algorithms=("grpo", "nsr"), n=4, problems=6,
                             benchmarks=("b",), warmup=False, base=False, answers=False)
    pp = load.load_evaluation(root).per_problem
    assert tables.final_table(pp)["maj_at_n"].isna().all()
    paired = tables.paired_comparisons(pp)
    assert set(paired["reference"]) == {"grpo"} and set(paired["metric"]) == {"avg@n", "pass@n"}
    nb = tmp_path / "out" / "e.ipynb"
    render_notebook(NOTEBOOKS / "evaluation.ipynb", nb, tmp_path / "out" / "e.html",
                    {"results_dir": "one", "study": "x"}, cwd=root.parent)
    assert notebook_errors(nb) == []
    # findings (NSR's entropy claim only: no base model), curves, bars (no maj@n row), forest,
    # zero reasons, monitor
    assert count_figures(nb) == 6


def test_training_without_a3po_popo_or_warmup(tmp_path, monkeypatch):
    make_fake_results(tmp_path / "r" / "small", algorithms=("grpo", "nsr"), steps=3, n=4,
                      problems=4, benchmarks=("b",), warmup=False)
    monkeypatch.chdir(tmp_path)  # relative outputs, a relative kernel cwd and results_dir
    render_notebook(NOTEBOOKS / "training.ipynb", Path("out/t.ipynb"), Path("out/t.html"),
                    {"results_dir": "small", "study": "x"}, cwd="r")
    nb = tmp_path / "out" / "t.ipynb"
    assert nb.is_file() and (tmp_path / "out" / "t.html").is_file()
    assert count_figures(nb) == 6  # no A3PO, POPO or warm-up panel
    text = nbformat.read(nb, as_version=4)
    printed = "".join(o.get("text", "") for c in text.cells if c.cell_type == "code" for o in c.outputs)
    assert "no A3PO run" in printed and "no POPO run" in printed and "no warm-up record" in printed


def test_evaluation_on_empty_results_prints_a_note(tmp_path):
    nb = tmp_path / "e.ipynb"
    render_notebook(NOTEBOOKS / "evaluation.ipynb", nb, tmp_path / "e.html",
                    {"results_dir": str(tmp_path / "nothing"), "study": "x"})
    assert count_figures(nb) == 0 and notebook_errors(nb) == []
    printed = "".join(o.get("text", "") for c in nbformat.read(nb, as_version=4).cells
                      if c.cell_type == "code" for o in c.outputs)
    assert "Note:" in printed


def test_failing_notebook_raises_with_cell_and_reason(tmp_path):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    nb.cells = [nbformat.v4.new_code_cell("results_dir = 'x'", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("raise ValueError(f'no results in {results_dir}')")]
    template = tmp_path / "bad.ipynb"
    nbformat.write(nb, template)
    out_nb, out_html = tmp_path / "out" / "bad.ipynb", tmp_path / "out" / "bad.html"
    with pytest.raises(NotebookExecutionError, match=r"(?s)bad\.ipynb.*ValueError: no results in y"):
        render_notebook(template, out_nb, out_html, {"results_dir": "y"})
    assert not out_nb.exists() and not out_html.exists()
    assert not list((tmp_path / "out").iterdir())  # no temporary files left behind
    with pytest.raises(FileNotFoundError):
        render_notebook(tmp_path / "missing.ipynb", out_nb, out_html, {})


def test_notebook_errors_and_count_figures(tmp_path):
    nb = nbformat.v4.new_notebook()
    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    nb.cells = [
        nbformat.v4.new_code_cell("a", outputs=[nbformat.v4.new_output("display_data", data=png)]),
        nbformat.v4.new_code_cell("b", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="hi"),
            nbformat.v4.new_output("execute_result", data=png, execution_count=1)]),
        nbformat.v4.new_code_cell("c", outputs=[nbformat.v4.new_output(
            "error", ename="KeyError", evalue="'x'", traceback=["\x1b[31mKeyError\x1b[0m"])]),
    ]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert count_figures(path) == 2
    assert notebook_errors(path) == ["cell 2: KeyError: 'x'"]
