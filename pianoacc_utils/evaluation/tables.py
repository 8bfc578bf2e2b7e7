"""Results tables built from committed evaluation reports (``results/evaluation*.json``).

A table has one column per system of a report (``("FNet", "evaluation", "fnet")``:
heading, report name, system) and one row per metric (``docs/metrics.md``). A cell is
the metric's value over segments (a median; key agreement and the copy check a mean,
as the report holds them) at the median seed, followed by its [min, max] across the
seeds where those differ at three significant digits; "–" where a report has no such
system. The last row counts the quality bar's checks passed at each seed. The README,
``docs/results.md``, the model cards and the listening page show tables built here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from pianoacc_utils.common import PianoaccError

Column = tuple[str, str, str]
"""(heading, report under ``results/`` without ``.json``, system in it)."""

Row = tuple[str, str]
"""(row heading, metric)."""


def number(value: float) -> str:
    """Three significant digits, as every results table prints them."""
    return f"{value:.3g}"


def cell(seeds: Mapping[str, Any], system: str, metric: str) -> str:
    """Median over seeds, with [min, max] when they differ as printed."""
    if system not in seeds["median"]:
        return "–"
    low, high = (number(v) for v in seeds["spread"][system][metric])
    middle = number(seeds["median"][system][metric])
    return middle if low == high else f"{middle} [{low}, {high}]"


def quality_cell(seeds: Mapping[str, Any], system: str) -> str:
    """Checks passed at each seed, ``"19 / 19 / 18 of 19"``; empty for the pianist."""
    if system not in seeds["median"]:
        return "–"
    rows = seeds.get("quality_bar", {}).get(system)
    if not rows:
        return ""
    passed = " / ".join(str(row["passed"]) for row in rows)
    return f"{passed} of {rows[0]['checks']}"


def critic_cell(critic: Mapping[str, Any] | None, system: str) -> str:
    """The critic's accuracy telling ``system`` from the pianist (a system of the report or
    one of its controls; the pianist's own column: the pianist against the pianist), "–"
    where the report ran no critic."""
    if not critic or "systems" not in critic:
        return "–"
    name = "ground_truth" if system == "ground_truth" else system
    row = critic["systems"].get(name) or critic.get("controls", {}).get(name)
    return number(row["accuracy"]) if row else "–"


def read_critics(results: Path, names: Sequence[str]) -> dict[str, Mapping[str, Any] | None]:
    """The critic of each report ``results/<name>.json`` (``details.critic``, run at its
    first seed), ``None`` where it has none."""
    return {
        name: json.loads((Path(results) / f"{name}.json").read_text())["details"].get("critic")
        for name in dict.fromkeys(names)
    }


def read_seeds(results: Path, names: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    """The ``seeds`` part of each report ``results/<name>.json``, all run at the same seeds.

    Raises :class:`PianoaccError` naming a missing or unreadable report, or the
    reports when their seeds differ.
    """
    reports = {}
    for name in dict.fromkeys(names):
        path = Path(results) / f"{name}.json"
        try:
            reports[name] = json.loads(path.read_text())["seeds"]
        except (OSError, ValueError, KeyError) as error:
            raise PianoaccError(f"{path}: not an evaluation report with seeds ({error})") from error
    seeds = {tuple(report["seeds"]) for report in reports.values()}
    if len(seeds) > 1:
        raise PianoaccError(f"{', '.join(reports)}: run at different seeds {sorted(seeds)}")
    return reports


def table_rows(
    columns: Sequence[Column],
    rows: Sequence[Row],
    results: str | Path,
    quality_heading: str | None = None,
    critic: bool = False,
) -> list[list[str]]:
    """The table as lists of cells: the header row first, then ``rows``, with ``critic``
    the critic's accuracy at the first seed (:func:`critic_cell`), the quality bar's row
    last."""
    names = [report for _, report, _ in columns]
    reports = read_seeds(Path(results), names)
    seeds = next(iter(reports.values()))["seeds"]
    table = [["metric", *(heading for heading, _, _ in columns)]]
    for heading, metric in rows:
        table.append([heading, *(cell(reports[r], s, metric) for _, r, s in columns)])
    if critic:
        critics = read_critics(Path(results), names)
        heading = f"critic accuracy, seed {seeds[0]} (0.5: indistinguishable)"
        table.append([heading, *(critic_cell(critics[r], s) for _, r, s in columns)])
    heading = quality_heading or f"quality bar, seeds {' / '.join(map(str, seeds))}"
    table.append([heading, *(quality_cell(reports[r], s) for _, r, s in columns)])
    return table


def markdown_table(table: Sequence[Sequence[str]]) -> str:
    """Rows of cells (header first) as a Markdown table, ending with a newline."""
    lines = ["| " + " | ".join(table[0]) + " |", "|---|" + "---|" * (len(table[0]) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    return "\n".join(lines) + "\n"
