"""How long the README's test command takes on a fresh clone, revision against revision.

For each revision: clone this checkout into a scratch folder, check the revision out,
link ``shared/`` beside the clone as CI has it (``.ci/run`` reads POP909 from
``../shared/pop909``), then time ``make setup`` (a new ``.venv``, from the package
caches) and ``bash .ci/run`` (``make test``) one after the other. The sum is what CI
waits for. Revisions run in turn on one machine so that their times compare; other
processes slow every run, so the load average is recorded with each.

Writes ``benchmarks/results/suite_time.json``: per revision the wall seconds of each
step, the CPU seconds (user + system) of all the processes they started, pytest's
summary line, the date and the machine; the file keeps the runs of other revisions, so
revisions timed on different days stay side by side (compare rows of one machine). Each
run's output goes to ``build/suite_time/``.

    python benchmarks/suite_time.py HEAD             # about 7 min on 2 AMD EPYC cores
    python benchmarks/suite_time.py 8237818 HEAD     # against an earlier revision
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import load_average, processor

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LOGS = REPO / "build" / "suite_time"
"""Each run's output (git-ignored)."""
STEPS = (("setup", ["make", "setup"]), ("test", ["bash", ".ci/run"]))
"""The steps timed, in order: the README's ``make test`` is both (it runs setup first)."""


def fresh_clone(revision: str, folder: Path, shared: Path) -> Path:
    """A clone of this checkout at ``revision`` in ``folder/main``, ``shared`` linked
    beside it as ``folder/shared``."""
    clone = folder / "main"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "checkout", "--quiet", revision], cwd=clone, check=True)
    (folder / "shared").symlink_to(shared.resolve())
    return clone


def pytest_summary(output: str) -> str:
    """pytest's last summary line (``528 passed, 4 warnings in 348.23s``), or ``""``."""
    summary = r"^=*\s*(\d+ (?:passed|failed)\b.*? in [\d.]+s\b.*?)\s*=*$"
    lines = re.findall(summary, output, re.MULTILINE)
    return lines[-1] if lines else ""


def children_cpu_seconds() -> float:
    """User plus system CPU seconds of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_revision(revision: str, shared: Path, log: Path) -> dict:
    """Clone ``revision`` and time :data:`STEPS` in the clone; the output goes to ``log``."""
    sha = subprocess.run(["git", "rev-parse", revision], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    subject = subprocess.run(["git", "log", "-1", "--format=%s", sha], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.strip()
    row = {"revision": sha, "subject": subject[:120], "date": time.strftime("%Y-%m-%d %H:%M"),
           "machine": processor(), "load_average_before": load_average()}
    # .ci/run finds POP909 beside the clone, and make builds the clone's own .venv
    env = {key: value for key, value in os.environ.items()
           if key not in ("POP909_DIR", "VIRTUAL_ENV")}
    with tempfile.TemporaryDirectory(prefix="suite-time-") as scratch:
        clone = fresh_clone(sha, Path(scratch), shared)
        with log.open("w") as handle:
            for name, command in STEPS:
                cpu, began = children_cpu_seconds(), time.perf_counter()
                run = subprocess.run(command, cwd=clone, env=env, stdout=handle,
                                     stderr=subprocess.STDOUT, check=False)
                row[f"{name}_seconds"] = round(time.perf_counter() - began, 1)
                row[f"{name}_cpu_seconds"] = round(children_cpu_seconds() - cpu, 1)
                row[f"{name}_returncode"] = run.returncode
                if run.returncode:
                    break
    row["total_seconds"] = round(sum(row.get(f"{name}_seconds", 0) for name, _ in STEPS), 1)
    row["pytest"] = pytest_summary(log.read_text(errors="replace"))
    row["load_average_after"] = load_average()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs="+", help="git revisions, timed in this order")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared",
                        help="the folder holding pop909/ (default: ../shared beside the checkout)")
    parser.add_argument("--out", type=Path, default=RESULTS / "suite_time.json")
    args = parser.parse_args(argv)
    if not (args.shared / "pop909").is_dir():
        parser.error(f"{args.shared}: no pop909/ folder in it (see --shared)")
    earlier = json.loads(args.out.read_text())["runs"] if args.out.is_file() else []
    rows = []
    LOGS.mkdir(parents=True, exist_ok=True)
    for revision in args.revisions:
        log = LOGS / f"{revision.replace('/', '_')}.log"
        rows.append(time_revision(revision, args.shared, log))
        print(json.dumps(rows[-1]), flush=True)
    timed = {row["revision"] for row in rows}
    kept = [row for row in earlier if row["revision"] not in timed]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": kept + rows}, indent=2) + "\n")
    return 1 if any(row.get("test_returncode", 1) for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
