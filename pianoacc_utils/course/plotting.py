"""Figures for the notebooks: piano rolls, histograms, bar charts, learning curves.

Every function builds and returns a :class:`matplotlib.figure.Figure` without
touching pyplot's global state (no ``plt.show()``, no figure manager), so that
figures never pile up in long notebook runs; a notebook displays a figure by
ending a cell with it and writes it with :func:`save_fig`.

Piano rolls take notes in *grid steps* (see :mod:`pianoacc_utils.data`): the x
axis is labelled in bars (numbered from 1) when ``bar_starts`` are given, in
beats otherwise; the y axis is MIDI pitch, labelled at every C.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, MultipleLocator

from pianoacc_utils.data.notes import Note
from pianoacc_utils.defaults import PITCH_NAMES, STEPS_PER_BEAT

DPI = 120
"""Resolution of saved figures (dots per inch)."""

TRACK_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")
"""Track colours in order: melody first (red), then accompaniment (blue), then the rest."""

REFERENCE_STYLES = ("--", ":", "-.")
"""Line styles of reference lines (``vlines``/``hlines``), in order."""


def save_fig(fig: Figure, name: str, folder: str | Path) -> Path:
    """Write ``fig`` to ``folder/name.png`` (120 dpi, tight bounding box); returns the path.

    Creates ``folder`` when missing. ``name`` has no extension (``"01_piano_roll"``).
    """
    path = Path(folder) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", format="png")
    return path


def pitch_name(pitch: int) -> str:
    """MIDI pitch -> scientific name (``60 -> "C4"``)."""
    return f"{PITCH_NAMES[pitch % 12]}{pitch // 12 - 1}"


# --------------------------------------------------------------------------- piano rolls


def _visible(notes: Sequence[Note], start: float, end: float) -> list[Note]:
    """Notes sounding somewhere in [start, end) (grid steps)."""
    return [n for n in notes if n.end > start and n.start < end]


def _time_range(
    tracks: Mapping[str, Sequence[Note]], bar_starts: Sequence[int] | None, start, end
) -> tuple[float, float]:
    """Shown range in steps: the bounds given, else step 0 (or an earlier bar) to the last end."""
    notes = [n for track in tracks.values() for n in track]
    if start is None:
        has_bars = bar_starts is not None and len(bar_starts) > 0
        start = min(0, int(bar_starts[0])) if has_bars else 0
    if end is None:
        end = max([n.end for n in notes] + [start + STEPS_PER_BEAT])
    return float(start), float(end)


def _draw_notes(ax, notes: Sequence[Note], colour: str) -> PatchCollection:
    """Notes as rectangles (one step of time per unit, one semitone high), alpha by velocity."""
    from matplotlib.colors import to_rgba

    rectangles = [Rectangle((n.start, n.pitch - 0.45), n.end - n.start, 0.9) for n in notes]
    red, green, blue, _ = to_rgba(colour)
    faces = [(red, green, blue, 0.25 + 0.75 * min(max(n.velocity, 0), 127) / 127) for n in notes]
    collection = PatchCollection(rectangles, facecolors=faces, edgecolors=colour, linewidths=0.4)
    ax.add_collection(collection)
    return collection


def _format_time_axis(
    ax, bar_starts: Sequence[int] | None, start: float, end: float, steps_per_beat: int,
    first_bar: int = 0,
) -> None:
    """Bar lines and bar numbers (from ``first_bar + 1``) when bars are known, beat numbers
    otherwise; beats as minor ticks."""
    ax.set_xlim(start, end)
    if bar_starts is not None and len(bar_starts):
        bars = np.asarray(bar_starts, dtype=float)
        shown = [(i, b) for i, b in enumerate(bars) if start <= b <= end]
        ax.vlines([b for _, b in shown], 0, 1, transform=ax.get_xaxis_transform(),
                  colors="0.35", linewidths=0.8, zorder=0)
        every = max(1, len(shown) // 16)
        ax.xaxis.set_major_locator(FixedLocator([b for i, b in shown if i % every == 0]))
        numbers = {b: first_bar + i + 1 for i, b in shown}
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: str(numbers.get(x, ""))))
        ax.set_xlabel("bar")
    else:
        beats = (end - start) / steps_per_beat
        ax.xaxis.set_major_locator(MultipleLocator(steps_per_beat * max(1, int(beats // 16))))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / steps_per_beat:g}"))
        ax.set_xlabel("beat")
    if (end - start) / steps_per_beat <= 64:
        ax.xaxis.set_minor_locator(MultipleLocator(steps_per_beat))


def _format_pitch_axis(ax, notes: Sequence[Note]) -> None:
    """Pitch range of the notes plus a margin; ticks at every C (or every octave's C and F#)."""
    pitches = [n.pitch for n in notes] or [60, 72]
    low, high = min(pitches) - 2, max(pitches) + 2
    ax.set_ylim(low - 0.5, high + 0.5)
    step = 6 if high - low <= 14 else 12
    ticks = [p for p in range(low, high + 1) if p % step == 0]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: pitch_name(int(round(y)))))
    ax.set_ylabel("pitch")


def piano_roll(
    tracks: Mapping[str, Sequence[Note]], bar_starts: Sequence[int] | None = None,
    steps_per_beat: int = STEPS_PER_BEAT, title: str | None = None, start: int | None = None,
    end: int | None = None, figsize: tuple[float, float] = (12.0, 4.5), first_bar: int = 0,
) -> Figure:
    """Several tracks overlaid in one axes, one colour each, with a legend.

    ``tracks`` maps a name (``"melody"``) to notes in grid steps; ``start``/``end``
    (steps) crop the view; ``bar_starts`` (steps) draw bar lines and number the bars,
    from ``first_bar + 1`` (pass a segment's ``first_bar`` to show the song's bar numbers).
    Darker rectangles are louder notes.
    """
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    low, high = _time_range(tracks, bar_starts, start, end)
    shown_notes: list[Note] = []
    handles = []
    for index, (name, notes) in enumerate(tracks.items()):
        colour = TRACK_COLOURS[index % len(TRACK_COLOURS)]
        visible = _visible(notes, low, high)
        shown_notes += visible
        _draw_notes(ax, visible, colour)
        label = f"{name} ({len(visible)})"
        handles.append(Patch(facecolor=colour, edgecolor=colour, alpha=0.7, label=label))
    _format_time_axis(ax, bar_starts, low, high, steps_per_beat, first_bar)
    _format_pitch_axis(ax, shown_notes)
    ax.grid(axis="y", color="0.9", linewidth=0.5)
    # Legend above the axes, right; title left: neither covers notes.
    ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(handles),
              fontsize="small", frameon=False, borderaxespad=0.2)
    if title:
        ax.set_title(title, loc="left")
    return fig


def stacked_piano_rolls(
    tracks: Mapping[str, Sequence[Note]], bar_starts: Sequence[int] | None,
    steps_per_beat: int = STEPS_PER_BEAT, title: str | None = None, start: int | None = None,
    end: int | None = None, row_height: float = 2.0, width: float = 12.0,
    colours: Sequence[str] | None = None, first_bar: int = 0,
) -> Figure:
    """One row per track (each with its own pitch range), sharing the time axis and bar lines.

    Made for comparisons such as melody / ground truth / generated accompaniments;
    times in grid steps, ``start``/``end`` crop the view, bars are numbered from
    ``first_bar + 1``. ``colours`` (one per row) overrides the default sequence, e.g.
    to give an original and its copy one colour.
    """
    colours = list(colours) if colours else list(TRACK_COLOURS)
    fig = Figure(figsize=(width, row_height * max(1, len(tracks)) + 0.6), layout="constrained")
    axes = fig.subplots(max(1, len(tracks)), 1, sharex=True, squeeze=False)[:, 0]
    low, high = _time_range(tracks, bar_starts, start, end)
    for index, (ax, (name, notes)) in enumerate(zip(axes, tracks.items())):
        visible = _visible(notes, low, high)
        _draw_notes(ax, visible, colours[index % len(colours)])
        _format_time_axis(ax, bar_starts, low, high, steps_per_beat, first_bar)
        _format_pitch_axis(ax, visible)
        ax.grid(axis="y", color="0.9", linewidth=0.5)
        ax.set_title(f"{name} ({len(visible)} notes)", loc="left", fontsize="medium")
        if index < len(tracks) - 1:
            ax.set_xlabel("")
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- generic charts


def _panels(values: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``{series: data}`` -> one unnamed panel; ``{panel: {series: data}}`` stays as it is."""
    if values and all(isinstance(v, Mapping) for v in values.values()):
        return dict(values)
    return {"": values}


def _grid_axes(fig: Figure, count: int, sharex: bool = False) -> list:
    columns = min(count, 3)
    rows = -(-count // columns)
    axes = fig.subplots(rows, columns, squeeze=False, sharex=sharex).ravel()
    for extra in axes[count:]:
        extra.remove()
    return list(axes[:count])


def _bin_edges(panels: Sequence[Mapping[str, Any]], bins: int | Sequence[float]) -> np.ndarray:
    """Bin edges: ``bins`` as given, or that many equal bins over all panels' finite values."""
    if not isinstance(bins, (int, np.integer)):
        return np.asarray(bins, dtype=float)
    numbers = [np.asarray(v, dtype=float).ravel() for panel in panels for v in panel.values()]
    values = np.concatenate(numbers) if numbers else np.zeros(0)
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    return np.linspace(low, high if high > low else low + 1.0, int(bins) + 1)


def histograms(
    values: Mapping[str, Any], bins: int | Sequence[float] = 50, xlabel: str = "",
    ylabel: str | None = None, title: str | None = None, vlines: Mapping[str, float] | None = None,
    density: bool = False, log: bool = False, sharex: bool = True,
    panel_size: tuple[float, float] = (5.0, 3.5),
) -> Figure:
    """Overlaid histograms, in one panel or several.

    ``values`` is ``{series: numbers}`` for one panel or ``{panel: {series: numbers}}``
    for one panel per key (e.g. one per split). An integer ``bins`` spreads that many
    equal bins over all panels' values when ``sharex``, over each panel's otherwise
    (panels in different units). ``vlines`` marks reference values
    (``{"1024 tokens": 1024}``) in every panel.
    """
    panels = _panels(values)
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(panel_size[0] * columns, panel_size[1] * rows), layout="constrained")
    axes = _grid_axes(fig, len(panels), sharex=sharex)
    shared_edges = _bin_edges(list(panels.values()), bins) if sharex else None
    for ax, (panel, series) in zip(axes, panels.items()):
        edges = shared_edges if sharex else _bin_edges([series], bins)
        single = len(series) == 1
        for index, (name, numbers) in enumerate(series.items()):
            numbers = np.asarray(numbers, dtype=float).ravel()
            colour = "tab:blue" if single else TRACK_COLOURS[index % len(TRACK_COLOURS)]
            ax.hist(numbers, bins=edges, density=density, histtype="stepfilled",
                    alpha=0.75 if single else 0.45, color=colour, edgecolor="none",
                    label=f"{name} (n={len(numbers):,})", log=log)
        for index, (name, x) in enumerate((vlines or {}).items()):
            ax.axvline(x, color="black", linestyle=REFERENCE_STYLES[index % 3], linewidth=1,
                       label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel or ("density" if density else "count"))
        if panel:
            ax.set_title(panel)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def bar_chart(
    values: Mapping[str, Any], xlabel: str = "", ylabel: str = "", title: str | None = None,
    horizontal: bool = False, log: bool = False, annotate: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Bars for ``{label: value}``, or grouped bars for ``{series: {label: value}}``.

    Labels keep the order of the first mapping they appear in. ``annotate`` is a
    format such as ``"{:.0%}"`` written on each bar.
    """
    panels = _panels(values)
    grouped = "" not in panels
    series = panels if grouped else {"": panels[""]}
    labels: list[str] = []
    for mapping in series.values():
        labels += [str(k) for k in mapping if str(k) not in labels]
    if figsize is None:
        long_side = max(5.0, min(14.0, 0.45 * len(labels) * max(1, len(series)) ** 0.5 + 2))
        figsize = (6.0, long_side * 0.6) if horizontal else (long_side, 4.0)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    positions = np.arange(len(labels), dtype=float)
    for index, (name, mapping) in enumerate(series.items()):
        lookup = {str(k): float(v) for k, v in mapping.items()}
        heights = [lookup.get(label, 0.0) for label in labels]
        offset = positions - 0.4 + width * (index + 0.5)
        colour = TRACK_COLOURS[index % len(TRACK_COLOURS)] if grouped else "tab:blue"
        draw = ax.barh if horizontal else ax.bar
        bars = draw(offset, heights, width * 0.95, color=colour, label=name or None, log=log)
        if annotate:
            texts = [annotate.format(h) for h in heights]
            ax.bar_label(bars, labels=texts, fontsize="x-small", padding=2)
    if horizontal:
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
        ax.set_ylabel(xlabel)
    else:
        crowded = len(labels) > 8 and max(map(len, labels), default=0) > 4
        ax.set_xticks(positions, labels, rotation=90 if crowded else 0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    if grouped:
        ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def _xy(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` pairs, pandas Series (index as x) or plain sequences (x = 0, 1, ...)."""
    if isinstance(data, tuple) and len(data) == 2:
        return np.asarray(data[0]), np.asarray(data[1], dtype=float)
    if hasattr(data, "index") and hasattr(data, "to_numpy"):
        return np.asarray(data.index), data.to_numpy(dtype=float)
    y = np.asarray(data, dtype=float)
    return np.arange(len(y)), y


def line_plot(
    series: Mapping[str, Any], xlabel: str = "", ylabel: str = "", title: str | None = None,
    steps: Sequence[str] = (), hlines: Mapping[str, float] | None = None, logy: bool = False,
    markers: bool = False, figsize: tuple[float, float] = (10.0, 4.0),
) -> Figure:
    """Lines for ``{name: (x, y)}`` (or a pandas Series, or y alone) in one axes.

    Series named in ``steps`` are drawn as step functions (values that hold until
    the next point, such as MIDI tempo events); ``hlines`` marks reference values.
    """
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    for index, (name, data) in enumerate(series.items()):
        x, y = _xy(data)
        ax.plot(x, y, label=name, color=TRACK_COLOURS[index % len(TRACK_COLOURS)],
                drawstyle="steps-post" if name in steps else "default",
                marker="o" if markers else None, markersize=3, linewidth=1.2)
    for index, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color="black", linestyle=REFERENCE_STYLES[index % 3], linewidth=1, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(color="0.9", linewidth=0.5)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def learning_curves(
    histories: Mapping[str, Any], metrics: Sequence[str] = ("loss", "val_loss"),
    title: str | None = None, logy: bool = False, panel_size: tuple[float, float] = (6.0, 4.0),
) -> Figure:
    """Training curves of several models: one panel per metric, ``val_`` dashed beside it.

    ``histories`` maps a model name to a pandas DataFrame (one row per epoch, columns
    as in a Keras ``History``: ``loss``, ``val_loss``, ...; an ``epoch`` column is used
    as the x axis when present, else epochs count from 1). Metrics a history lacks are
    skipped; each model keeps one colour across panels.
    """
    bases = list(dict.fromkeys(m.removeprefix("val_") for m in metrics))
    fig = Figure(figsize=(panel_size[0] * len(bases), panel_size[1]), layout="constrained")
    axes = fig.subplots(1, len(bases), squeeze=False)[0]
    for ax, base in zip(axes, bases):
        for index, (model, history) in enumerate(histories.items()):
            colour = TRACK_COLOURS[index % len(TRACK_COLOURS)]
            epochs = (
                np.asarray(history["epoch"]) if "epoch" in history.columns
                else np.arange(1, len(history) + 1)
            )
            for metric in metrics:
                if metric.removeprefix("val_") != base or metric not in history.columns:
                    continue
                validation = metric.startswith("val_")
                ax.plot(epochs, np.asarray(history[metric], dtype=float), color=colour,
                        linestyle="--" if validation else "-", marker="o", markersize=3,
                        label=f"{model} {'validation' if validation else 'train'}")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(base)
        ax.grid(color="0.9", linewidth=0.5)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def heatmaps(
    arrays: Mapping[str, Any], xlabel: str = "", ylabel: str = "", title: str | None = None,
    annotate: str | None = "{:.1f}", panel_size: tuple[float, float] = (3.5, 3.5),
) -> Figure:
    """Small matrices side by side, one panel each, on one shared symmetric colour scale.

    ``arrays`` maps a panel title to a 2-D array (rows drawn top to bottom, e.g.
    tokens x features). Zero is white, positive red, negative blue, with the same
    limits in every panel so that equal values look equal; ``annotate`` is a format
    written in every cell (``None``: no numbers, for larger matrices).
    """
    matrices = {name: np.asarray(values, dtype=float) for name, values in arrays.items()}
    limit = max([float(np.nanmax(np.abs(m))) for m in matrices.values() if m.size] + [1e-12])
    fig = Figure(figsize=(panel_size[0] * len(matrices) + 1.0, panel_size[1]), layout="constrained")
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    image = None
    for ax, (name, matrix) in zip(axes, matrices.items()):
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(matrix.shape[1]))
        ax.set_yticks(range(matrix.shape[0]))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize="medium")
        if annotate:
            for (row, column), value in np.ndenumerate(matrix):
                ax.text(column, row, annotate.format(value), ha="center", va="center",
                        fontsize="x-small", color="white" if abs(value) > 0.6 * limit else "black")
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def scaling_plot(
    series: Mapping[str, Any], xlabel: str = "", ylabel: str = "", title: str | None = None,
    slopes: Mapping[str, tuple[float, str]] | None = None,
    figsize: tuple[float, float] = (7.0, 4.5),
) -> Figure:
    """How a cost grows with a size, on log-log axes: ``{name: (sizes, costs)}``.

    Made for time against sequence length (tokens). The x axis is in powers of two,
    ticked at the measured sizes. ``slopes`` draws grey reference lines
    ``{label: (power, series name)}``: cost proportional to ``size ** power`` through
    the first point of the named series (``{"~ L^2": (2, "self-attention")}``); on
    log-log axes a measured line parallel to it grows with that power.
    """
    from matplotlib.ticker import LogLocator, NullFormatter

    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    sizes: set[float] = set()
    points = {}
    for index, (name, data) in enumerate(series.items()):
        x, y = _xy(data)
        x = np.asarray(x, dtype=float)
        points[name] = (x, y)
        sizes.update(x.tolist())
        ax.plot(x, y, marker="o", markersize=4, linewidth=1.5, label=name,
                color=TRACK_COLOURS[index % len(TRACK_COLOURS)])
    for index, (label, (power, anchor)) in enumerate((slopes or {}).items()):
        x, y = points[anchor]
        reference = y[0] * (x / x[0]) ** power
        ax.plot(x, reference, color="0.4", linewidth=1,
                linestyle=REFERENCE_STYLES[(index + 1) % len(REFERENCE_STYLES)], label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = sorted(sizes)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_formatter(plain)
    low, high = ax.get_ylim()
    if high / low < 100:  # under two decades: label the 2s and 5s between the powers of ten
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(plain)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(color="0.9", linewidth=0.5, which="both")
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def critic_chart(report: Mapping[str, Any], figsize: tuple[float, float] = (8, 3.5)) -> Figure:
    """The critic's accuracy per comparison of a ``evaluation.critic_report``, with its
    95% interval over songs: the systems in blue, the controls in grey, chance (0.5)
    dashed."""
    rows = {**report["systems"], **{f"{n} (control)": r for n, r in report["controls"].items()}}
    names = list(rows)
    accuracy = [rows[n]["accuracy"] for n in names]
    errors = [[rows[n]["accuracy"] - rows[n]["accuracy_lo"] for n in names],
              [rows[n]["accuracy_hi"] - rows[n]["accuracy"] for n in names]]
    colours = ["tab:blue"] * len(report["systems"]) + ["tab:gray"] * len(report["controls"])
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, accuracy, xerr=errors, color=colours)
    ax.axvline(0.5, color="black", lw=0.8, ls="--")
    ax.set(xlim=(0.4, 1.0), xlabel="critic accuracy on held-out songs (0.5: cannot tell)")
    ax.invert_yaxis()
    return fig
