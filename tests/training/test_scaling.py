"""Scaling curves: the fit recovers a known law, says how uncertain it is, refuses too
little data; and a run to token budgets measures at each budget, over several sittings."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from tiny import TINY

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.models import ModelConfig
from pianoacc_utils.prepare import PrepareConfig, load_split, prepare
from pianoacc_utils.training import SegmentBatches, TrainConfig
from pianoacc_utils.training.scaling import (
    ScalingLaw,
    bootstrap_losses,
    fit_scaling_law,
    train_to_budgets,
)

TRUE = ScalingLaw(E=1.2, A=40.0, alpha=0.35, B=300.0, beta=0.4)
GRID = [(n, d) for n in (6e4, 2.5e5, 1e6) for d in (2.5e5, 5e5, 1e6, 2e6)]


def points(law: ScalingLaw, noise: float = 0.0, seed: int = 0):
    n, d = (np.array(column) for column in zip(*GRID))
    loss = law.loss(n, d) * np.exp(np.random.default_rng(seed).normal(0, noise, len(n)))
    return n, d, loss


def test_fit_recovers_a_known_law_and_extrapolates_with_it():
    n, d, loss = points(TRUE)
    law = fit_scaling_law(n, d, loss)
    assert np.allclose(law.loss(n, d), loss, rtol=1e-4)
    # far outside the grid (the full profile's size, a thousand times the tokens)
    assert law.loss(4e7, 2e9) == pytest.approx(TRUE.loss(4e7, 2e9), rel=0.02)


def test_bootstrap_interval_widens_away_from_the_data():
    n, d, loss = points(TRUE, noise=0.01)
    at = [(2.5e5, 1e6), (4e7, 2e9)]  # inside the grid, far outside it
    draws = bootstrap_losses(n, d, loss, at, draws=60)
    assert draws.shape == (60, 2) and np.isfinite(draws).all()
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    inside, outside = high - low
    assert outside > 3 * inside
    truth = [float(TRUE.loss(*point)) for point in at]
    assert low[1] <= truth[1] <= high[1]  # far out: wide, and it holds the truth
    assert truth[0] == pytest.approx(low[0], rel=0.02) and truth[0] == pytest.approx(high[0], rel=0.02)


def test_fit_refuses_too_few_points_sizes_or_budgets():
    n, d, loss = points(TRUE)
    with pytest.raises(PianoaccError, match="6\\+ points"):
        fit_scaling_law(n[:5], d[:5], loss[:5])
    one_size = [i for i, (size, _) in enumerate(GRID) if size == 6e4] * 2
    with pytest.raises(PianoaccError, match="1 sizes"):
        fit_scaling_law(n[one_size], d[one_size], loss[one_size])
    with pytest.raises(PianoaccError, match="positive"):
        fit_scaling_law(n, d, -loss)


def test_train_to_budgets_measures_at_each_budget_and_resumes(test_environment, tmp_path):
    folder = prepare(PrepareConfig(bars_per_segment=4, hop_bars=4, songs=8, max_tokens=256),
                     progress=False)
    config = ModelConfig(kind="fnet", **TINY)
    settings = TrainConfig(batch_size=8, learning_rate=3e-3, warmup_steps=5, seed=1)
    one_length = {"length_multiple": config.accompaniment_length}  # one shape: one trace
    train = SegmentBatches(load_split(folder, "train"), config, 8, seed=1, **one_length)
    validation = SegmentBatches(load_split(folder, "train"), config, 8, shuffle=False,
                                max_segments=16, **one_length)
    per_epoch = train.num_tokens
    budgets = [400, 1500, per_epoch + 500]  # the last one needs a second epoch
    run = train_to_budgets(config, train, validation, budgets, settings)
    rows = run["budgets"]
    assert [row["budget"] for row in rows] == budgets
    assert all(row["tokens"] >= row["budget"] for row in rows)
    assert [row["steps"] for row in rows] == sorted({row["steps"] for row in rows})
    assert 1.0 < rows[-1]["epochs"] < 2.0
    assert all(math.isfinite(row["val_loss"]) for row in rows)
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert run["parameters"]["total"] > 0 and run["finished"]
    with pytest.raises(PianoaccError, match="inverse_sqrt"):
        cosine = dataclasses.replace(settings, decay="cosine", decay_steps=10)
        train_to_budgets(config, train, validation, budgets, cosine)

    # The same run over three sittings: stopped after its first budget, then after its
    # next save, it goes on where it stood and measures what the run above measured.
    state = tmp_path / "run"
    sittings = []
    for stop in (0.0, 0.0, None):
        fresh = SegmentBatches(load_split(folder, "train"), config, 8, seed=1, **one_length)
        sittings.append(train_to_budgets(config, fresh, validation, budgets, settings,
                                         state_dir=state, checkpoint_steps=3,
                                         stop_after_seconds=stop))
    counts = [len(s["budgets"]) for s in sittings]
    assert counts[0] == 1 and counts[0] <= counts[1] < counts[2] == 3
    assert [s["finished"] for s in sittings] == [False, False, True]
    resumed = sittings[-1]["budgets"]
    assert [(r["tokens"], r["steps"], r["epochs"]) for r in resumed] == [
        (r["tokens"], r["steps"], r["epochs"]) for r in rows]
    assert [r["val_loss"] for r in resumed] == pytest.approx([r["val_loss"] for r in rows], rel=1e-3)
    assert len(list(state.glob("budget_run.*.keras"))) == 1
    with pytest.raises(PianoaccError, match="only add larger"):
        train_to_budgets(config, train, validation, [300, *budgets], settings, state_dir=state)


def synthetic_report() -> dict:
    """A report shaped as ``results/scaling.py`` writes it, from :data:`TRUE`."""
    runs, fits = [], {}
    for kind, slower in (("fnet", 1.0), ("transformer", 1.3)):
        for size, parameters in (("xs", 6e4), ("s", 2.5e5), ("m", 1e6)):
            budgets = [{"budget": int(d), "tokens": int(d) + 10, "steps": int(d) // 5000,
                        "val_loss": float(TRUE.loss(parameters, d))} for d in (2.5e5, 5e5, 1e6, 2e6)]
            runs.append({"kind": kind, "size": size, "parameters": {"total": int(parameters)},
                         "budgets": budgets, "seconds_per_token": 1e-4 * slower * parameters / 1e6})
        prediction = {"parameters": 10**6, "tokens": 10**7, "predicted": 2.0,
                      "interval_68": [1.9, 2.1], "interval_95": [1.8, 2.2], "measured": 2.05}
        fits[kind] = {"law": TRUE.to_dict(), "relative_rms_residual": 0.01,
                      "predictions": {"shipped run (out of sample)": prediction}}
    return {"runs": runs, "fits": fits}


def test_the_notebook_view_of_a_scaling_report():
    from pianoacc_utils.course.scaling import fit_table, law_table, scaling_figure, scaling_points

    report = synthetic_report()
    points = scaling_points(report)
    assert len(points) == 2 * 3 * 4
    transformer = points[points["encoder"] == "Transformer"]
    assert transformer["compute_seconds"].iloc[0] == pytest.approx(
        transformer["tokens"].iloc[0] * 1e-4 * 1.3 * 6e4 / 1e6)
    figure = scaling_figure(report)
    by_tokens, by_compute = figure.axes
    assert len(by_tokens.lines) == 2 * 3 * 2  # points and the fitted law per size
    assert len(by_compute.lines) == 2 * 3
    table = fit_table(report)
    assert table.loc[("FNet", "shipped run (out of sample)"), "95% interval"] == "1.800 to 2.200"
    assert list(law_table(report).index) == ["FNet", "Transformer"]


def test_the_frontier_takes_the_best_run_within_each_compute_level():
    from pianoacc_utils.course.scaling import frontier_table

    table = frontier_table(synthetic_report())
    assert table.index.is_monotonic_increasing and len(table) == 24
    assert table["FNet"].is_monotonic_decreasing  # more compute never does worse
    first = table.iloc[0]  # the cheapest point: FNet xs at its first budget
    assert first["FNet run"] == "xs, 0.25M tokens" and first["Transformer"] != first["Transformer"]


def test_the_held_out_and_equal_time_tables_read_the_report():
    from pianoacc_utils.course.scaling import equal_time_table, held_out_table

    report = synthetic_report()
    for fit in report["fits"].values():
        fit["out_of_sample"] = {"held_out": {"s, 41,000,000 tokens": {
            "predicted": 2.0, "interval_68": [1.95, 2.05], "interval_95": [1.9, 2.1],
            "measured": 2.2, "relative_error": -0.0909, "inside_68": False, "inside_95": False}}}
        fit["equal_time"] = {"favoured": {"1 h": "s", "10 h": "m"}, "predictions": {
            f"{size}, {hours} h": {"predicted": loss, "size": size, "hours": float(hours)}
            for size, hours, loss in (
                ("s", 1, 2.0), ("m", 1, 2.1), ("s", 10, 1.9), ("m", 10, 1.7))}}
    held = held_out_table(report)
    assert held.loc[("FNet", "s, 41,000,000 tokens"), "95% interval"] == "1.900 to 2.100"
    assert not held["inside 95%"].any()
    timed = equal_time_table(report)
    assert list(timed.columns) == ["s", "m", "favoured"]
    assert timed.loc[("Transformer", "10 h"), "m"] == 1.7
    assert timed.loc[("FNet", "1 h"), "favoured"] == "s"
