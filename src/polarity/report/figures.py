"""Every figure of the report notebooks, by name, saved as its own PNG.

A notebook calls :func:`show` instead of ``plt.show()``: the figure is saved under its name
(in studies with several models, each model's figure is appended below the previous one) and
shown in the notebook. ``snakemake --report`` then shows each file as its own item with its own
caption (``workflow/report/figures/<notebook>/<name>.rst``). :func:`fill_missing`, the last
cell, writes a short note as the figure of every name the study had nothing to draw for, so
the rule's declared outputs always exist.
"""

from __future__ import annotations

from pathlib import Path

FIGURES: dict[str, tuple[str, ...]] = {
    "training": ("accuracy_reward", "hacking_monitor", "entropy", "response_length",
                 "polarity_counts", "groups_without_signal", "a3po", "popo", "warmup"),
    "evaluation": ("findings", "pass_at_k", "metric_bars", "paired_differences",
                   "zero_reasons", "hacking_monitor"),
}
DPI = 100


def figure_path(figures_dir, name: str) -> Path:
    return Path(figures_dir) / f"{name}.png"


def _append_below(path: Path, new_png: Path) -> None:
    from PIL import Image

    top, bottom = Image.open(path).convert("RGB"), Image.open(new_png).convert("RGB")
    out = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), "white")
    out.paste(top, (0, 0))
    out.paste(bottom, (0, top.height))
    out.save(path)


def save(fig, figures_dir, name: str) -> Path | None:
    """Save ``fig`` as figure ``name`` (appended below an earlier figure of the same name in
    this run: one per model). ``figures_dir`` None: save nothing (interactive use)."""
    if figures_dir is None:
        return None
    path = figure_path(figures_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        part = path.with_name(f".{name}.part.png")
        fig.savefig(part, dpi=DPI, bbox_inches="tight")
        _append_below(path, part)
        part.unlink()
    else:
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def show(fig, figures_dir, name: str) -> None:
    """Save figure ``name`` (:func:`save`), then display it in the notebook."""
    import matplotlib.pyplot as plt

    save(fig, figures_dir, name)
    plt.show()


def fill_missing(figures_dir, notebook: str, message: str = "nothing to draw in this study") -> list[str]:
    """Write a note as the figure of every name of ``notebook`` not saved; returns those names."""
    if figures_dir is None:
        return []
    import matplotlib.pyplot as plt

    missing = [n for n in FIGURES[notebook] if not figure_path(figures_dir, n).exists()]
    for name in missing:
        fig, ax = plt.subplots(figsize=(5, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{name}: {message}", ha="center", va="center")
        save(fig, figures_dir, name)
        plt.close(fig)
    return missing
