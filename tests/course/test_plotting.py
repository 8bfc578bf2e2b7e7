"""The figure helpers: each returns a Figure with the axes and artists asked for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.figure import Figure

from pianoacc_utils.course import plotting
from pianoacc_utils.data import Note

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def tracks() -> dict[str, list[Note]]:
    melody = [Note(8 * i, 8 * i + 6, 72 + i % 5, 90) for i in range(16)]
    accompaniment = [Note(16 * i, 16 * i + 16, 48 + i % 3, 40 + 10 * i) for i in range(8)]
    return {"melody": melody, "accompaniment": accompaniment}


def _patch_collections(ax) -> list[PatchCollection]:
    return [c for c in ax.collections if isinstance(c, PatchCollection)]


def test_save_fig_writes_a_png_in_a_new_folder(tmp_path, tracks):
    fig = plotting.piano_roll(tracks)
    path = plotting.save_fig(fig, "01_piano_roll", tmp_path / "nested" / "figures")
    assert path == tmp_path / "nested" / "figures" / "01_piano_roll.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 2000


def test_piano_roll_draws_one_collection_per_track_and_bar_lines(tracks):
    fig = plotting.piano_roll(tracks, bar_starts=[0, 32, 64, 96], title="two tracks")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    notes = _patch_collections(ax)
    assert [len(c.get_paths()) for c in notes] == [16, 8]
    (bar_lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(bar_lines.get_segments()) == 4
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["melody (16)", "accompaniment (8)"]
    assert ax.get_title(loc="left") == "two tracks"
    assert ax.get_xlabel() == "bar"
    # Louder notes are drawn more opaque.
    alphas = notes[1].get_facecolors()[:, 3]
    assert np.all(np.diff(alphas) > 0)


def test_piano_roll_crops_to_the_requested_steps(tracks):
    fig = plotting.piano_roll(tracks, bar_starts=[0, 32, 64, 96], start=32, end=64)
    (ax,) = fig.axes
    assert ax.get_xlim() == (32.0, 64.0)
    # Only notes sounding in [32, 64): melody onsets 32, 40, 48, 56; accompaniment 32, 48.
    assert [len(c.get_paths()) for c in _patch_collections(ax)] == [4, 2]
    (bar_lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(bar_lines.get_segments()) == 2
    low, high = ax.get_ylim()
    assert low < 48 and high > 76
    labels = [ax.xaxis.get_major_formatter()(x) for x in ax.xaxis.get_major_locator()()]
    assert labels == ["2", "3"]
    shifted = plotting.piano_roll(tracks, bar_starts=[0, 32, 64, 96], start=32, end=64, first_bar=4)
    ax = shifted.axes[0]
    assert [ax.xaxis.get_major_formatter()(x) for x in ax.xaxis.get_major_locator()()] == ["6", "7"]


def test_piano_roll_without_bars_counts_beats(tracks):
    fig = plotting.piano_roll(tracks)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "beat"
    assert not [c for c in ax.collections if isinstance(c, LineCollection)]


def test_stacked_piano_rolls_share_time_and_bar_lines(tracks):
    three = {**tracks, "generated": tracks["accompaniment"][:3]}
    fig = plotting.stacked_piano_rolls(three, bar_starts=[0, 32, 64, 96], title="compare")
    assert len(fig.axes) == 3
    assert len({ax.get_xlim() for ax in fig.axes}) == 1
    for ax, expected in zip(fig.axes, [16, 8, 3]):
        (collection,) = _patch_collections(ax)
        assert len(collection.get_paths()) == expected
        assert any(isinstance(c, LineCollection) for c in ax.collections)
    assert fig.get_suptitle() == "compare"
    paired = plotting.stacked_piano_rolls(tracks, None, colours=["tab:green", "tab:green"])
    edges = [_patch_collections(ax)[0].get_edgecolors()[0] for ax in paired.axes]
    assert np.allclose(edges[0], edges[1])


def test_histograms_one_panel_or_one_per_key():
    rng = np.random.default_rng(0)
    single = plotting.histograms(
        {"melody": rng.normal(500, 50, 100), "accompaniment": rng.normal(1400, 200, 100)},
        bins=20, vlines={"1024 tokens": 1024},
    )
    (ax,) = single.axes
    assert len(ax.patches) == 2  # one filled step outline per series
    assert len(ax.lines) == 1
    split = {name: {"melody": rng.normal(size=30), "accompaniment": rng.normal(size=30)}
             for name in ("train", "validation", "test")}
    panels = plotting.histograms(split, bins=10)
    assert [ax.get_title() for ax in panels.axes] == ["train", "validation", "test"]
    assert all(len(ax.patches) == 2 for ax in panels.axes)
    # Panels in different units get their own bins unless the x axis is shared.
    units = {"tempo": {"songs": [60, 90, 120]}, "drift": {"songs": [0.0, 0.5, 1.0]}}
    free = plotting.histograms(units, bins=4, sharex=False)
    assert [ax.patches[0].get_path().vertices[:, 0].max() for ax in free.axes] == [120, 1.0]


def test_bar_chart_plain_and_grouped():
    fig = plotting.bar_chart({"maj": 0.5, "min": 0.3, "min7": 0.2}, annotate="{:.0%}")
    (ax,) = fig.axes
    assert len(ax.patches) == 3
    assert ax.get_legend() is None
    assert [t.get_text() for t in ax.texts] == ["50%", "30%", "20%"]
    grouped = plotting.bar_chart(
        {"melody": {"8": 1.0, "16": 0.99, "32": 0.9}, "accompaniment": {"8": 1.0, "16": 0.7}},
        horizontal=True,
    )
    (ax,) = grouped.axes
    assert len(ax.patches) == 6  # missing values are drawn as zero-length bars
    assert [t.get_text() for t in ax.get_yticklabels()] == ["8", "16", "32"]
    assert len(ax.get_legend().get_texts()) == 2


def test_line_plot_accepts_pairs_series_and_plain_values():
    fig = plotting.line_plot(
        {
            "annotated": (np.arange(5), np.array([90, 91, 90, 89, 90])),
            "midi": pd.Series([90.0, 88.0], index=[0, 3]),
            "plain": [1.0, 2.0, 3.0],
        },
        steps=("midi",), hlines={"median": 90},
    )
    (ax,) = fig.axes
    assert len(ax.lines) == 4
    assert ax.lines[1].get_drawstyle() == "steps-post"
    assert list(ax.lines[1].get_xdata()) == [0, 3]


def test_learning_curves_one_panel_per_metric():
    histories = {
        "fnet": pd.DataFrame({"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.4, 2.0],
                              "accuracy": [0.1, 0.2, 0.3]}),
        "transformer": pd.DataFrame({"epoch": [1, 2], "loss": [2.9, 1.9], "val_loss": [3.0, 2.2]}),
    }
    fig = plotting.learning_curves(histories)
    (ax,) = fig.axes
    assert len(ax.lines) == 4
    assert [line.get_linestyle() for line in ax.lines] == ["-", "--", "-", "--"]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]
    two = plotting.learning_curves(histories, metrics=("loss", "val_loss", "accuracy"))
    assert [ax.get_ylabel() for ax in two.axes] == ["loss", "accuracy"]
    assert len(two.axes[1].lines) == 1  # only the model that logged accuracy


def test_pitch_names():
    assert plotting.pitch_name(60) == "C4"
    assert plotting.pitch_name(21) == "A0"
    assert plotting.pitch_name(70) == "Bb4"  # flat spellings, as in defaults.PITCH_NAMES


def test_heatmaps_share_one_symmetric_colour_scale():
    small = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    fig = plotting.heatmaps(
        {"input": small, "doubled": 2 * small}, xlabel="feature", ylabel="token"
    )
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["input", "doubled"]
    for ax in panels:
        (image,) = ax.get_images()
        assert image.get_clim() == (-6.0, 6.0)  # the largest magnitude of all panels, both signs
        assert len(ax.texts) == small.size
    assert panels[1].texts[1].get_text() == "-4.0"
    assert not plotting.heatmaps({"plain": small}, annotate=None).axes[0].texts


def test_scaling_plot_is_log_log_with_reference_slopes():
    lengths = [256, 512, 1024]
    fig = plotting.scaling_plot(
        {"fourier": (lengths, [1.0, 2.1, 4.5]), "attention": (lengths, [2.0, 8.0, 33.0])},
        slopes={"~ L": (1, "fourier"), "~ L^2": (2, "attention")},
        xlabel="tokens", ylabel="ms",
    )
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert len(ax.lines) == 4
    linear, quadratic = ax.lines[2], ax.lines[3]
    assert list(linear.get_ydata()) == pytest.approx([1.0, 2.0, 4.0])
    assert list(quadratic.get_ydata()) == pytest.approx([2.0, 8.0, 32.0])
    assert list(ax.get_xticks()) == lengths
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["fourier", "attention", "~ L", "~ L^2"]


def test_scaling_plot_labels_plain_numbers():
    narrow = plotting.scaling_plot({"step": ([256, 512, 1024], [25.0, 40.0, 90.0])})
    ax = narrow.axes[0]
    labels = [ax.yaxis.get_minor_formatter()(value) for value in (20.0, 50.0)]
    assert labels == ["20", "50"]  # no 2 x 10^1: readable on a short log axis
    assert ax.yaxis.get_major_formatter()(100.0) == "100"
    wide = plotting.scaling_plot({"step": ([256, 4096], [0.2, 900.0])}).axes[0]
    assert wide.yaxis.get_minor_formatter()(20.0) == ""


def test_critic_chart_puts_each_comparison_between_chance_and_one():
    row = {"accuracy": 0.8, "accuracy_lo": 0.7, "accuracy_hi": 0.9}
    blocks = {"accuracy": 0.99, "accuracy_lo": 0.98, "accuracy_hi": 1.0}
    report = {"systems": {"fnet": row}, "controls": {"block_chords": blocks}}
    ax = plotting.critic_chart(report).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fnet", "block_chords (control)"]
    assert [round(p.get_width(), 2) for p in ax.patches] == [0.8, 0.99]
    assert ax.get_xlim() == (0.4, 1.0) and ax.lines[-1].get_xdata()[0] == 0.5
