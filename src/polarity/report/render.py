"""Execute a parameterised report notebook with papermill and convert it to standalone HTML.

``render_notebook`` writes both outputs atomically (a temporary name in the same folder,
then ``os.replace``), so a failed or killed run never leaves a half-written report behind.
A cell that raises makes it raise ``NotebookExecutionError`` naming the notebook, the cell
and the exception, with the traceback of the failing cell.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import nbformat

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookExecutionError(RuntimeError):
    """A report notebook failed to execute; the message says which cell and why."""


def _strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _tmp_path(path: Path) -> Path:
    # papermill wants the .ipynb suffix; the leading dot keeps globbing rules away from it
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


def _iter_outputs(nb):
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            yield index, cell, output


def notebook_errors(nb_path) -> list[str]:
    """Every error output of a notebook, as ``"cell <i>: <ename>: <evalue>"`` lines."""
    nb = nbformat.read(str(nb_path), as_version=4)
    return [
        f"cell {index}: {output.get('ename', 'Error')}: {_strip_ansi(str(output.get('evalue', '')))}"
        for index, _, output in _iter_outputs(nb)
        if output.get("output_type") == "error"
    ]


def count_figures(nb_path) -> int:
    """How many outputs of a notebook carry an image/png (one per figure shown)."""
    nb = nbformat.read(str(nb_path), as_version=4)
    return sum(
        1 for _, _, output in _iter_outputs(nb)
        if output.get("output_type") in ("display_data", "execute_result")
        and "image/png" in output.get("data", {})
    )


def _failure_message(template: Path, executed: Path | None, exc: BaseException) -> str:
    lines = [f"report notebook {template} failed to execute"]
    nb = None
    if executed is not None and executed.exists():
        try:
            nb = nbformat.read(str(executed), as_version=4)
        except Exception:  # a notebook papermill could not finish writing
            nb = None
    found = False
    for index, cell, output in _iter_outputs(nb) if nb is not None else []:
        if output.get("output_type") != "error":
            continue
        found = True
        source = cell.source if len(cell.source) < 600 else cell.source[:600] + " ..."
        tb = _strip_ansi("\n".join(output.get("traceback", [])))
        tb_lines = tb.splitlines()
        if len(tb_lines) > 40:
            tb = "\n".join(["...", *tb_lines[-40:]])
        lines += [
            f"the cell executed as In [{cell.get('execution_count')}] (cell {index} of the executed "
            f"notebook) raised {output.get('ename')}: {_strip_ansi(str(output.get('evalue')))}",
            "--- cell source ---", source, "--- traceback ---", tb,
        ]
        break
    if not found:
        lines.append(f"{type(exc).__name__}: {_strip_ansi(str(exc))}")
    return "\n".join(lines)


def render_notebook(
    template: Path,
    out_ipynb: Path,
    out_html: Path,
    parameters: dict,
    kernel_name: str = "python3",
    cwd=None,
) -> None:
    """Run ``template`` with ``parameters`` (papermill), write the executed notebook and its HTML.

    ``cwd`` is the kernel's working directory (relative ``results_dir`` values resolve there;
    default: this process's). Raises ``FileNotFoundError`` for a missing template and
    ``NotebookExecutionError`` when a cell fails; neither output is written then.
    """
    import papermill as pm
    from nbconvert import HTMLExporter

    # absolute paths: papermill saves the notebook from inside the kernel's cwd
    template, out_ipynb, out_html = (Path(p).resolve() for p in (template, out_ipynb, out_html))
    if not template.is_file():
        raise FileNotFoundError(f"report notebook template not found: {template}")
    out_ipynb.parent.mkdir(parents=True, exist_ok=True)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    tmp_nb, tmp_html = _tmp_path(out_ipynb), _tmp_path(out_html)
    try:
        try:
            pm.execute_notebook(
                str(template), str(tmp_nb), parameters=dict(parameters or {}),
                kernel_name=kernel_name, log_output=False, progress_bar=False,
                request_save_on_cell_execute=False,
                cwd=None if cwd is None else str(Path(cwd).resolve()),
            )
        except Exception as exc:  # PapermillExecutionError, dead kernel, missing kernel, ...
            raise NotebookExecutionError(_failure_message(template, tmp_nb, exc)) from exc
        errors = notebook_errors(tmp_nb)  # errors papermill let through (e.g. raises-exception cells)
        if errors:
            raise NotebookExecutionError(
                f"report notebook {template} produced error outputs:\n" + "\n".join(errors))
        nb = nbformat.read(str(tmp_nb), as_version=4)
        # readers see text, tables and figures; the executed notebook keeps the code
        exporter = HTMLExporter(embed_images=True, exclude_input=True, exclude_input_prompt=True,
                                exclude_output_prompt=True)
        body, _ = exporter.from_notebook_node(nb)
        tmp_html.write_text(body, encoding="utf-8")
        os.replace(tmp_nb, out_ipynb)
        os.replace(tmp_html, out_html)
    finally:
        for tmp in (tmp_nb, tmp_html):
            tmp.unlink(missing_ok=True)
