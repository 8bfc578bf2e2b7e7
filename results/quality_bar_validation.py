"""The committed evaluations judged again, with the quality bar's thresholds from the
validation split's pianist instead of the test split's.

    .venv/bin/python results/quality_bar_validation.py

``pianoacc evaluate`` now reads the bar's thresholds from the validation split's pianist
(:mod:`pianoacc_utils.evaluation.reference`). The committed reports were written before,
with thresholds from the very test segments they judge. Each report keeps, per system and
seed, every metric's statistic over segments (``seeds.per_seed``): exactly what the bar
compares, so the bar can be judged again from the report without generating anything.
This rewrites each report's ``quality_bar`` (first seed) and ``seeds.quality_bar``, adds
the ``quality_reference`` it used and a ``quality_bar_judged_by`` note, and writes the
report's Markdown table again. Nothing is chosen here: the test reports are only
reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pianoacc_utils.common import write_atomic, write_json
from pianoacc_utils.evaluation import EvaluationConfig, load_reference, report_markdown
from pianoacc_utils.evaluation.reports import quality_bar
from pianoacc_utils.evaluation.summary import EvaluationResult

DECIDES_ON = None
"""The split this script chooses on (reports the committed test evaluations again), ``None``
where it chooses nothing; ``tests/test_project.py`` checks that no script chooses on the test
split."""

RESULTS = Path(__file__).parent
REPORTS = (
    "continued_evaluation",
    "continued_evaluation_no_rules",
)
"""The committed ``pianoacc evaluate --json`` reports (each with its ``.md``) written before
the bar's thresholds came from the validation split. ``evaluation``,
``evaluation_estimated_chords`` and ``evaluation_no_rules`` were written again since, at
today's sampling defaults, by ``pianoacc evaluate`` itself against the validation pianist
(``docs/results.md``)."""
COMMAND = ".venv/bin/python results/quality_bar_validation.py"


def seed_result(report: dict[str, Any], position: int) -> EvaluationResult:
    """The statistics a quality bar compares, for the seed at ``position``: each system's
    per-seed statistic of every metric, as an :class:`EvaluationResult` summary."""
    per_seed = report["seeds"]["per_seed"]
    summary = {
        system: {
            metric: {"median": values[position], "mean": values[position]}
            for metric, values in metrics.items()
        }
        for system, metrics in per_seed.items()
    }
    systems = list(per_seed)
    metrics = list(next(iter(per_seed.values())))
    empty = {system: {m: [] for m in metrics} for system in systems}
    return EvaluationResult(systems, metrics, [], empty, summary, {})


def judge(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` with its quality bars judged against the validation pianist."""
    settings = report["details"]["config"]
    config = EvaluationConfig(
        split=settings["split"], bars_per_segment=settings["bars_per_segment"],
        meter=settings.get("meter", "4/4"),
    )
    reference = load_reference(config)
    bars_before = report["seeds"]["quality_bar"]
    seeds = report["seeds"]["seeds"]
    rows = {}
    for system in bars_before:
        rows[system] = []
        for position, seed in enumerate(seeds):
            checks = quality_bar(seed_result(report, position), system, reference)
            rows[system].append(checks)
    report["quality_bar"] = {system: checks[0] for system, checks in rows.items()}
    report["seeds"]["quality_bar"] = {
        system: [
            {
                "seed": seed,
                "passed": sum(row["passed"] for row in checks),
                "checks": len(checks),
                "failed": [row["criterion"] for row in checks if not row["passed"]],
            }
            for seed, checks in zip(seeds, rows[system])
        ]
        for system in rows
    }
    report["quality_reference"] = reference
    report["quality_bar_judged_by"] = (
        f"{COMMAND}: thresholds from the {reference['split']} split's pianist "
        f"({reference['segments']} segments), from the report's per-seed statistics"
    )
    return report


def main() -> None:
    lines = ["| report | system | before (test pianist) | now (validation pianist) |",
             "|---|---|---|---|"]
    for name in REPORTS:
        path = RESULTS / f"{name}.json"
        report = json.loads(path.read_text())
        # the bar as judged against the test pianist, kept when the script runs again
        report.setdefault("quality_bar_before", report["seeds"]["quality_bar"])
        before = {
            system: " / ".join(str(row["passed"]) for row in rows)
            for system, rows in report["quality_bar_before"].items()
        }
        report = judge(report)
        for system, rows in report["seeds"]["quality_bar"].items():
            now = " / ".join(str(row["passed"]) for row in rows)
            checks = rows[0]["checks"]
            lines.append(f"| {name} | {system} | {before[system]} of {checks} | {now} of {checks} |")
        write_json(path, report)
        write_atomic(path.with_suffix(".md"), (report_markdown(report) + "\n").encode())
        print(f"wrote {path} and .md")
    summary = RESULTS / "quality_bar_validation.md"
    text = (
        "# The quality bar judged against the validation split's pianist\n\n"
        f"Written by `{COMMAND}`. Checks passed per sampling seed, with the thresholds "
        "taken from the test split's own pianist (before) and from the validation "
        "split's (now); the reports' metrics are unchanged. The three main reports "
        "(`evaluation`, `evaluation_estimated_chords`, `evaluation_no_rules`) were run again "
        "since, at today's sampling defaults, and judged against the validation pianist by "
        "`pianoacc evaluate` itself.\n\n" + "\n".join(lines) + "\n"
    )
    write_atomic(summary, text.encode())
    print(f"wrote {summary}")


if __name__ == "__main__":
    main()
