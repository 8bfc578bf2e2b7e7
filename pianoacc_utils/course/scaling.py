"""Notebook 05's view of ``results/scaling.json``: loss against tokens and against compute.

The report holds one training run per encoder and size, measured at several token
budgets, and one fitted law per encoder (:mod:`pianoacc_utils.training.scaling`).
:func:`scaling_points` flattens the runs into a table; :func:`scaling_figure` draws
validation loss against tokens seen (one line per size, fitted law dashed) and against
compute on this machine (seconds = tokens x the measured seconds per token), where an
encoder's cheaper step shows as a curve shifted to the left.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

from pianoacc_utils.models.config import KIND_NAMES
from pianoacc_utils.training.scaling import ScalingLaw

KIND_COLOURS = {"fnet": "tab:green", "transformer": "tab:purple"}
SIZE_MARKERS = ("o", "s", "^", "D", "v")


def scaling_points(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per run and budget: encoder, size, parameters, the budget and the tokens
    actually seen (the first step at or past it), steps, validation loss, and compute in
    seconds on the measuring machine (tokens x seconds per token)."""
    rows = [
        {"encoder": KIND_NAMES[run["kind"]], "size": run["size"],
         "parameters": run["parameters"]["total"], "budget": row["budget"], "tokens": row["tokens"],
         "steps": row["steps"], "val_loss": row["val_loss"],
         "compute_seconds": row["tokens"] * run["seconds_per_token"]}
        for run in report["runs"] for row in run["budgets"]
    ]
    return pd.DataFrame(rows)


def scaling_figure(report: Mapping[str, Any], figsize: tuple[float, float] = (12, 4.5)) -> Figure:
    """Left: validation loss against target tokens seen, per encoder and size, with each
    encoder's fitted law (dashed). Right: the same points against compute seconds."""
    points = scaling_points(report)
    sizes = list(dict.fromkeys(points["size"]))
    fig = Figure(figsize=figsize, layout="constrained")
    by_tokens, by_compute = fig.subplots(1, 2, sharey=True)
    for kind, name in KIND_NAMES.items():
        law = ScalingLaw(**report["fits"][kind]["law"])
        colour = KIND_COLOURS[kind]
        for index, size in enumerate(sizes):
            rows = points[(points["encoder"] == name) & (points["size"] == size)]
            if rows.empty:
                continue
            style = dict(color=colour, marker=SIZE_MARKERS[index % len(SIZE_MARKERS)])
            label = f"{name} {size} ({rows['parameters'].iloc[0] / 1e3:,.0f}k)"
            by_tokens.plot(rows["tokens"], rows["val_loss"], linestyle="none", label=label, **style)
            tokens = np.geomspace(rows["tokens"].min() / 1.5, rows["tokens"].max() * 1.5, 50)
            by_tokens.plot(tokens, law.loss(rows["parameters"].iloc[0], tokens), color=colour,
                           linestyle="--", linewidth=1)
            by_compute.plot(rows["compute_seconds"], rows["val_loss"], linewidth=1.2, **style)
    by_tokens.set(xscale="log", xlabel="target tokens seen", ylabel="validation loss (nats per token)",
                  title="Loss against data, fitted law dashed")
    by_compute.set(xscale="log", xlabel="compute: seconds of training on the measuring machine",
                   title="Loss against compute")
    budgets = sorted(set(points["budget"]))
    by_tokens.xaxis.set_major_locator(FixedLocator(budgets))
    by_tokens.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 1e6:g}M"))
    by_compute.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    by_compute.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    for axes in (by_tokens, by_compute):
        axes.xaxis.set_minor_formatter(NullFormatter())
    by_tokens.legend(fontsize=8)
    return fig


def fit_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """Per encoder, each prediction of its fitted law: parameters, tokens, the predicted
    loss with its 68% and 95% bootstrap intervals, and the measured loss where there is one."""
    rows = {}
    for kind, fit in report["fits"].items():
        for target, value in fit["predictions"].items():
            rows[(KIND_NAMES[kind], target)] = {
                "parameters": value["parameters"], "tokens": value["tokens"],
                "predicted": value["predicted"],
                "68% interval": "{:.3f} to {:.3f}".format(*value["interval_68"]),
                "95% interval": "{:.3f} to {:.3f}".format(*value["interval_95"]),
                "measured": value.get("measured", float("nan")),
            }
    return pd.DataFrame.from_dict(rows, orient="index")


def law_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """The fitted constants per encoder and the fit's relative RMS residual."""
    return pd.DataFrame({
        KIND_NAMES[kind]: {**fit["law"], "relative RMS residual": fit["relative_rms_residual"]}
        for kind, fit in report["fits"].items()
    }).T


def frontier_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """Equal compute: at each measured compute level (seconds), the lowest validation loss
    each encoder reached within it, over all its sizes and budgets, and with which size.
    Where one encoder's cheaper step buys a bigger model or more tokens, it shows here."""
    points = scaling_points(report).sort_values("compute_seconds")
    rows = []
    for level in points["compute_seconds"]:
        row: dict[str, Any] = {"compute seconds": level}
        for name in KIND_NAMES.values():
            within = points[(points["encoder"] == name) & (points["compute_seconds"] <= level)]
            if within.empty:
                row[name], row[f"{name} run"] = float("nan"), ""
                continue
            best = within.loc[within["val_loss"].idxmin()]
            row[name] = best["val_loss"]
            row[f"{name} run"] = f"{best['size']}, {best['budget'] / 1e6:g}M tokens"
        rows.append(row)
    return pd.DataFrame(rows).set_index("compute seconds")


def held_out_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """The law judged out of sample, per encoder: each size's largest budget held out,
    predicted by the law fitted to every other point, against what it measured (the
    relative error, and whether the measurement lies in the 68% and 95% intervals)."""
    rows = {}
    for kind, fit in report["fits"].items():
        for target, value in fit["out_of_sample"]["held_out"].items():
            rows[(KIND_NAMES[kind], target)] = {
                "predicted": value["predicted"],
                "95% interval": "{:.3f} to {:.3f}".format(*value["interval_95"]),
                "measured": value["measured"], "relative error": value["relative_error"],
                "inside 68%": value["inside_68"], "inside 95%": value["inside_95"],
            }
    return pd.DataFrame.from_dict(rows, orient="index")


def equal_time_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """Which size the law favours for a given time on the measuring machine: the predicted
    loss of every size trained for each number of hours (rows: encoder and hours; columns:
    sizes), and the favoured size."""
    rows = {}
    for kind, fit in report["fits"].items():
        timed = fit["equal_time"]
        for hours, favoured in timed["favoured"].items():
            row: dict[str, Any] = {
                value["size"]: value["predicted"] for value in timed["predictions"].values()
                if f"{value['hours']:g} h" == hours
            }
            rows[(KIND_NAMES[kind], hours)] = {**row, "favoured": favoured}
    return pd.DataFrame.from_dict(rows, orient="index")
