"""`--plot FILE.png`: charts drawn with matplotlib when it is installed (it is optional)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from broke.errors import InvalidInputError

Series = Mapping[str, Sequence[float]]


def _pyplot():
    """matplotlib's pyplot on a file-only backend, or a clear error when it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise InvalidInputError("--plot needs matplotlib: `.venv/bin/pip install matplotlib`") from None
    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    return plt


def check_target(path: Path) -> None:
    """Refuse a plot file name early (before any work): wrong suffix, or a folder that does not exist."""
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise InvalidInputError(f"--plot {path}: the file name must end in .png, .svg or .pdf")
    if not path.parent.is_dir():
        raise InvalidInputError(f"--plot {path}: folder {path.parent} does not exist")


def line_plot(path: Path, *, x: Sequence[float], series: Series, title: str, xlabel: str, ylabel: str) -> Path:
    """One line per series over the shared `x`; returns the file written."""
    check_target(path)
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, values in series.items():
        axes.plot(list(x), list(values), label=name, marker="." if len(x) <= 30 else None)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def bar_plot(path: Path, *, groups: Sequence[str], series: Series, title: str, ylabel: str) -> Path:
    """Grouped bars: one group per entry of `groups`, one bar per series (NaN = no bar)."""
    check_target(path)
    plt = _pyplot()
    width = 0.8 / max(1, len(series))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(1, len(series)) * 0.6), 4.5))
    for number, (name, values) in enumerate(series.items()):
        positions = [g + number * width for g in range(len(groups))]
        axes.bar(positions, list(values), width=width, label=name)
    axes.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], list(groups),
                    rotation=20, ha="right")
    axes.set(title=title, ylabel=ylabel)
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
