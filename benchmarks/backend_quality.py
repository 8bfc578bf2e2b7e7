"""Does the backend change how good the accompaniment is? TensorFlow against JAX.

``pianoacc accompany`` runs on JAX when the user has not chosen a backend
(``pianoacc_utils.FAST_COMMANDS``), while the pins, the evaluations and the notebooks
run on TensorFlow. Both backends run the same model and decoding rules, but draw
different random numbers (and round differently), so a seed gives other notes. This
script runs ``pianoacc evaluate`` on the same test segments and seeds under each
backend (``KERAS_BACKEND`` set per process; the copy check off) and compares, per
metric, each backend's median over seeds against the other's spread between seeds.

Run: ``.venv/bin/python benchmarks/backend_quality.py`` (about 15 minutes on 2 CPU
cores); writes ``benchmarks/results/backend_quality.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import load_average, processor

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "backend_quality.json"
BACKENDS = ("tensorflow", "jax")


def evaluate(backend: str, args: argparse.Namespace, folder: Path) -> dict:
    """``pianoacc evaluate`` of the shipped FNet model under ``backend``: its JSON report."""
    out = folder / f"{backend}.json"
    command = [
        str(Path(sys.executable).with_name("pianoacc")), "evaluate", "--checkpoint", args.model,
        "--segments", str(args.segments), "--bars", str(args.bars), "--seeds",
        *map(str, args.seeds), "--no-copy-check", "--json", str(out),
    ]
    env = {**os.environ, "KERAS_BACKEND": backend, "MPLBACKEND": "Agg"}
    began = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    report = json.loads(out.read_text())
    report["_seconds"] = round(time.perf_counter() - began, 1)
    return report


def compare(reports: dict[str, dict], system: str) -> dict:
    """Per metric of ``system``: each backend's median over seeds and its seeds' spread
    ([min, max]), and whether each backend's median lies inside the other's spread."""
    rows = {}
    for metric in reports[BACKENDS[0]]["seeds"]["median"][system]:
        row = {
            backend: {
                "median": report["seeds"]["median"][system][metric],
                "spread": report["seeds"]["spread"][system][metric],
            }
            for backend, report in reports.items()
        }
        numbers = [row[b]["median"] for b in reports] + [x for b in reports for x in row[b]["spread"]]
        if all(isinstance(x, float) and math.isfinite(x) for x in numbers):
            row["within_seed_spread"] = all(
                low - 1e-12 <= row[b]["median"] <= high + 1e-12
                for b in reports for other in reports if other != b
                for low, high in [row[other]["spread"]]
            )
        rows[metric] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fnet")
    parser.add_argument("--segments", type=int, default=24)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        reports = {backend: evaluate(backend, args, Path(tmp)) for backend in BACKENDS}
    system = next(name for name in reports[BACKENDS[0]]["seeds"]["median"] if args.model in name)
    metrics = compare(reports, system)
    payload = {
        "model": args.model, "system": system, "segments": args.segments, "bars": args.bars,
        "seeds": args.seeds, "seconds": {b: r["_seconds"] for b, r in reports.items()},
        "quality_bar": {b: r["seeds"]["quality_bar"].get(system) for b, r in reports.items()},
        "metrics": metrics,
        "metrics_within_seed_spread": sum(bool(m.get("within_seed_spread")) for m in
                                          metrics.values()),
        "metrics_compared": sum("within_seed_spread" in m for m in metrics.values()),
        "machine": {"processor": processor(), "load_average_after": load_average()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"{payload['metrics_within_seed_spread']} of {payload['metrics_compared']} metrics: "
          "both backends' medians inside both seed ranges")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
