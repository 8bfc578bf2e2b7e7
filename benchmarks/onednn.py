"""TensorFlow with and without its oneDNN kernels: one training step, on this machine.

TensorFlow turns its oneDNN kernels on by itself only where the processor has AVX-512's
neural-network instructions or AMX; the package turns them on everywhere
(``pianoacc_utils.backends.startup.ONEDNN``). This script times one training step
(``training_throughput.time_steps``: a fresh model, the batch of median length, float32)
of the FNet and the Transformer of the ``quick`` and ``small`` profiles under TensorFlow,
in one process with ``TF_ENABLE_ONEDNN_OPTS=0`` and one with ``1``, and records whether
TensorFlow would have turned oneDNN on by itself here, the processor and the load.

Run: ``.venv/bin/python benchmarks/onednn.py`` (about 3 minutes on 2 CPU cores); writes
``benchmarks/results/onednn.json`` (``--out`` for another file): each row's median step
in seconds, and per profile and model the step time without oneDNN over the time with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from machine import load_average, processor
from training_throughput import run_backend

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "onednn.json"
PROFILES = ("quick", "small")
KINDS = ("fnet", "transformer")
SETTINGS = ("0", "1")
"""``TF_ENABLE_ONEDNN_OPTS`` in each timed process: off, on."""


def default_state() -> bool:
    """Whether TensorFlow, left to itself (the variable unset, the package not loaded),
    turns oneDNN on on this processor."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    probe = ("import tensorflow\nfrom tensorflow.python.util import _pywrap_util_port as port\n"
             "print(port.IsMklEnabled())")
    done = subprocess.run([sys.executable, "-c", probe], env=environment, check=True,
                          capture_output=True, text=True)
    return done.stdout.split()[-1] == "True"


def ratios(rows: list[dict]) -> dict[str, float]:
    """Per profile and model: median step without oneDNN over the median step with it."""
    steps = {(r["profile"], r["kind"], r["onednn"]): r["step_seconds_median"] for r in rows}
    return {f"{profile}/{kind}": round(steps[profile, kind, "0"] / steps[profile, kind, "1"], 2)
            for profile, kind, setting in steps if setting == "1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES))
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (the first traces)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per row")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    worker = argparse.Namespace(steps=args.steps, warmup=args.warmup, profiles=args.profiles,
                                kinds=args.kinds, precisions=["float32"], loss_steps=0,
                                loss_seeds=0)
    began, load_before = time.perf_counter(), load_average()
    rows, before = [], os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    try:
        for setting in SETTINGS:
            os.environ["TF_ENABLE_ONEDNN_OPTS"] = setting
            result = run_backend("tensorflow", worker, False)
            rows += [{"onednn": setting, **row} for row in result["rows"]]
    finally:
        if before is None:
            os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
        else:
            os.environ["TF_ENABLE_ONEDNN_OPTS"] = before
    payload = {
        "machine": {"processor": processor(), "load_average_before": load_before,
                    "load_average_after": load_average()},
        "tensorflow_turns_onednn_on_here": default_state(),
        "seconds": round(time.perf_counter() - began, 1),
        "without_over_with": ratios(rows),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps({k: payload[k] for k in ("tensorflow_turns_onednn_on_here",
                                               "without_over_with")}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
