"""What ``pianoacc accompany`` imports before it starts, and how long each part takes.

Runs ``python -X importtime`` on the imports of the command's process (the package and
its command line, with the command's arguments, so that the backend and the hidden and
deferred imports of ``pianoacc_utils.backends.startup`` are those of the command) and
records the cumulative import time of the packages that weigh: JAX and ml_dtypes, Keras,
keras-hub, what Keras and keras-hub import only when installed (scikit-learn, SciPy,
kagglehub, ...), and the package itself. ``--repeats`` runs, the fastest kept per module
(other processes only add time).

``--source DIR`` imports another checkout of the package (``git archive COMMIT | tar -x
-C DIR``) with this virtual environment, as ``benchmarks/accompany_wait.py`` does; a
``PYTHONPATH`` set in the environment comes first (e.g. an older ml_dtypes).

Run: ``.venv/bin/python benchmarks/accompany_imports.py --label current``; adds its
label to ``benchmarks/results/accompany_imports.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from machine import load_average, processor

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "accompany_imports.json"
MODULES = (
    "ml_dtypes", "jax", "scipy.sparse", "scipy.stats", "sklearn", "keras", "kagglehub",
    "huggingface_hub", "requests", "keras_hub", "pianoacc_utils", "pianoacc_utils.cli",
)
"""Modules whose cumulative import time is recorded (absent: not imported)."""

IMPORTS = (
    "import os, sys\n"
    "source = sys.argv[1]\n"
    "if source:\n"
    "    sys.path.insert(0, source)\n"
    "sys.argv = ['pianoacc', 'accompany']\n"
    # The package sends file descriptor 2 to the null device while it loads (TensorFlow's
    # start-up lines); -X importtime writes there, so that redirection is skipped here.
    "os.dup2 = lambda fd, fd2, inheritable=True: fd2\n"
    "from pianoacc_utils.cli import main\n"
    "import json\n"
    "print(json.dumps(sorted(sys.modules)))\n"
)


def import_times(source: Path | None) -> dict[str, float]:
    """Cumulative import seconds of every module the command's imports load (first
    import of each; a hidden package's failed import is no import)."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", IMPORTS, str(source or "")],
        capture_output=True, text=True, env=env, cwd=ROOT, check=True,
    )
    times = {}
    for line in done.stderr.splitlines():  # "import time: SELF | CUMULATIVE | NAME" (us)
        if not line.startswith("import time:"):
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if cumulative.strip().isdigit():  # not the header line
            times.setdefault(name.strip(), int(cumulative) / 1e6)
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    return {name: seconds for name, seconds in times.items() if name in loaded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", type=Path, help="another checkout to import")
    parser.add_argument("--label", default="current")
    parser.add_argument("--note", help="what to know about these runs (kept with them)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    load = load_average()
    runs = [import_times(args.source) for _ in range(args.repeats)]
    fastest = {
        name: round(min(run.get(name, float("inf")) for run in runs), 3)
        for name in MODULES if any(name in run for run in runs)
    }
    payload = json.loads(args.out.read_text()) if args.out.is_file() else {}
    payload[args.label] = {
        "source": str(args.source) if args.source else "this checkout",
        "note": args.note,
        "processor": processor(),
        "load_average_before": load,
        "repeats": args.repeats,
        "seconds": fastest,
        "not_imported": [name for name in MODULES if name not in fastest],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    for name, seconds in fastest.items():
        print(f"{name:<20} {seconds:6.3f} s")
    print(f"not imported: {', '.join(payload[args.label]['not_imported']) or '-'}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
