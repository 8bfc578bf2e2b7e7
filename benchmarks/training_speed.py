"""Training throughput of the FNet and Transformer models against sequence length.

For each kind and each length L (tokens), a model of the ``cpu`` profile's size
with ``melody_length = accompaniment_length = L`` trains on random full-length
batches (melody and accompaniment both L tokens, no padding): one warm-up step
(tracing/compilation) is discarded, then ``--steps`` steps are timed.
Throughput counts accompaniment (target) tokens per second, from the median
step time (``ms_per_step_min`` is the fastest step, less sensitive to other
processes on a shared machine).

Writes ``benchmarks/results/training_speed.json`` (figures plus machine info:
backend, device, cores, versions) and ``benchmarks/results/training_speed.png``.

    python benchmarks/training_speed.py                  # TensorFlow, CPU: a few minutes
    KERAS_BACKEND=jax python benchmarks/training_speed.py --out /tmp/jax_speed
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402  (after models: the backend default is set there)

from pianoacc_utils.common import processor_name, write_json  # noqa: E402
from pianoacc_utils.models import KINDS  # noqa: E402
from pianoacc_utils.training import PROFILES, measure_step_time  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LENGTHS = (256, 512, 1024, 2048)


def machine_info() -> dict:
    """Backend, device, cores and library versions of this run."""
    info = {
        "backend": keras.backend.backend(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "processor": processor_name(),
    }
    if info["backend"] == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        info["tensorflow"] = tf.__version__
        info["device"] = ", ".join(
            tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus
        ) or "CPU"
    elif info["backend"] == "jax":
        import jax

        info["jax"] = jax.__version__
        info["device"] = ", ".join(str(d.device_kind) for d in jax.devices())
    return info


def plot(rows: list[dict], info: dict, path: Path) -> None:
    """Tokens per second and milliseconds per step against length, one line per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        lengths = [r["length"] for r in mine]
        left.plot(lengths, [r["tokens_per_second"] for r in mine], "o-", label=kind)
        right.plot(lengths, [r["ms_per_step"] for r in mine], "o-", label=kind)
    for axis, label in ((left, "accompaniment tokens / s"), (right, "ms per training step")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("sequence length (tokens, melody = accompaniment)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    batch = rows[0]["batch_size"] if rows else "?"
    figure.suptitle(
        f"Training speed, cpu-profile model size, batch {batch} "
        f"({info['backend']}, {info.get('device', '?')}, {info['cores']} cores)"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up one")
    parser.add_argument(
        "--min-seconds", type=float, default=3.0, help="keep timing steps until this long"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)

    info = machine_info()
    began = time.perf_counter()
    rows = []
    for kind in KINDS:
        model_config = PROFILES["cpu"].model_config(kind)
        for length in args.lengths:
            (row,) = measure_step_time(
                kind, [length], model_config, args.batch_size, args.steps, args.min_seconds
            )
            rows.append(row)
            print(
                f"{kind:<12}{length:>6} tokens  {row['ms_per_step']:>9.1f} ms/step  "
                f"{row['tokens_per_second']:>9.1f} tokens/s  (warm-up {row['warmup_seconds']} s)",
                flush=True,
            )
    model = dataclasses.asdict(PROFILES["cpu"].model)
    payload = {
        "machine": info,
        "model": {
            key: value
            for key, value in model.items()
            if key not in ("kind", "melody_length", "accompaniment_length")
        },
        "seconds": round(time.perf_counter() - began, 1),
        "results": rows,
    }
    write_json(args.out / "training_speed.json", payload)
    plot(rows, info, args.out / "training_speed.png")
    print(f"wrote {args.out / 'training_speed.json'} and {args.out / 'training_speed.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
