"""Training throughput on this machine: backends and precisions side by side.

For the ``small`` and ``cpu`` profiles' models (their ``ModelConfig`` and batch size from
``training.PROFILES``; FNet unless ``--kinds`` says otherwise), one training step
(``train_on_batch``: forward, backward, AdamW update, as ``compile_model`` sets it up)
is timed under TensorFlow and JAX, each in its own process (``KERAS_BACKEND`` is read
once, when Keras is imported), in float32 and with
``keras.mixed_precision.set_global_policy("mixed_bfloat16")``.

The batch is real: of one epoch's batches of the small profile's prepared training split
(8-bar segments, at most 512 tokens; the cpu profile cuts the same 8-bar windows, so its
lengths are alike), the one with the median padded accompaniment length, with the
profile's batch size. After ``--warmup`` untimed steps (the first traces and compiles),
``--steps`` steps are timed: median, fastest and slowest step, the process's CPU seconds
per step, and the load average. Throughput counts target tokens per second (real tokens;
``padded_tokens_per_second`` counts padding too), from the median step.

``--loss-check`` adds the precision's effect on what is learned: the ``quick`` profile's
model trained ``--loss-steps`` steps (its batches, padded to one length, and its
optimizer: :func:`loss_run`) in float32 and in mixed bfloat16 from the same seeds
(``--loss-seeds`` of them), on one backend (``--loss-backend``); the validation losses
along the way and at the end are compared.

Run: ``.venv/bin/python benchmarks/training_throughput.py --loss-check`` (about 12
minutes on 2 CPU cores); writes ``benchmarks/results/training_throughput.json`` (``--out``
for another file). The committed results, one file per processor
(``training_throughput.json``: AMD EPYC; ``training_throughput_xeon_small.json``: an Intel
Xeon with AMX, ``--profiles small``, under load), are set side by side, with the Intel Xeon
figures reported in issue 32, in ``benchmarks/results/training_throughput.md``. Training
itself does not read them: it times its own model in both precisions
(``pianoacc_utils.training.precision``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import load_average, processor, versions

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "training_throughput.json"
BACKENDS = ("tensorflow", "jax")
PRECISIONS = ("float32", "mixed_bfloat16")
PROFILE_NAMES = ("small", "cpu")
KINDS = ("fnet",)
"""Model kinds timed by default (``--kinds fnet transformer`` for both)."""
DATA_PROFILE = "small"
"""The profile whose prepared training split gives the batches (see the module docstring)."""


def median_batch(batch_size: int, model_config) -> tuple[dict, object, dict]:
    """The batch of median padded accompaniment length among one shuffled epoch's batches
    of :data:`DATA_PROFILE`'s training split, ``batch_size`` rows; and its shape summary."""
    import numpy as np

    from pianoacc_utils.prepare import load_split, prepare
    from pianoacc_utils.training import (
        PROFILES,
        SegmentBatches,
        median_length_batch,
        padded_lengths,
    )

    profile = PROFILES[DATA_PROFILE]
    split = load_split(prepare(profile.prepare, progress=False), "train")
    batches = SegmentBatches(
        split, model_config, batch_size, shuffle=True, seed=profile.train.seed,
        length_multiple=profile.train.length_multiple,
    )
    lengths = padded_lengths(batches)
    inputs, target = median_length_batch(batches, lengths)
    shape = {
        "melody_tokens": int(inputs["melody"].shape[1]),
        "accompaniment_tokens": int(target.shape[1]),
        "rows": int(target.shape[0]),
        "real_target_tokens": int((target != 0).sum()),
        "epoch_mean_padded_accompaniment": round(float(np.mean(lengths)), 1),
    }
    return inputs, target, shape


def time_steps(profile_name: str, kind: str, precision: str, warmup: int, steps: int) -> dict:
    """One row: a fresh ``kind`` model of ``profile_name`` trained on the median batch."""
    import keras

    from pianoacc_utils.models import build_model, count_parameters
    from pianoacc_utils.training import PROFILES, compile_model

    profile = PROFILES[profile_name]
    config = profile.model_config(kind)
    inputs, target, shape = median_batch(profile.train.batch_size, config)
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(config), profile.train)
    began = time.perf_counter()
    for _ in range(warmup):
        model.train_on_batch(inputs, target)
    warmup_seconds = time.perf_counter() - began
    walls, cpus, loads = [], [], []
    for _ in range(steps):
        loads.append(os.getloadavg()[0])
        wall, cpu = time.perf_counter(), time.process_time()
        model.train_on_batch(inputs, target)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    keras.mixed_precision.set_global_policy("float32")
    median = statistics.median(walls)
    padded = shape["rows"] * shape["accompaniment_tokens"]
    return {
        "profile": profile_name,
        "kind": kind,
        "precision": precision,
        "batch_size": profile.train.batch_size,
        "parameters": count_parameters(model)["total"],
        **shape,
        "warmup_steps": warmup,
        "warmup_seconds": round(warmup_seconds, 2),
        "steps": steps,
        "step_seconds_median": round(median, 4),
        "step_seconds_min": round(min(walls), 4),
        "step_seconds_max": round(max(walls), 4),
        "cpu_seconds_per_step": round(statistics.median(cpus), 4),
        "tokens_per_second": round(shape["real_target_tokens"] / median, 1),
        "tokens_per_second_fastest": round(shape["real_target_tokens"] / min(walls), 1),
        "padded_tokens_per_second": round(padded / median, 1),
        "load_average_during": [round(min(loads), 2), round(max(loads), 2)],
    }


def loss_run(precision: str, seed: int, steps: int) -> dict:
    """The quick profile's FNet trained ``steps`` steps in ``precision`` from seed ``seed``;
    its validation loss (masked cross-entropy per real token) every ``steps // 4`` steps.

    Its batches are the profile's (segments, batch size, shuffling, hidden chords), padded
    to one shape (the profile's full lengths; harmony tables and bar lines to each split's
    longest: ``fixed_tables``) so that one training step is compiled, not one per shape; the
    optimizer is the profile's (``compile_model``)."""
    import keras
    import numpy as np

    from pianoacc_utils.models import build_model
    from pianoacc_utils.prepare import load_split, prepare
    from pianoacc_utils.training import PROFILES, SegmentBatches, compile_model

    profile = PROFILES["quick"]
    config, settings = profile.model_config("fnet"), profile.train
    folder = prepare(profile.prepare, progress=False)
    full = max(config.melody_length, config.accompaniment_length)
    batches = {"model_config": config, "batch_size": settings.batch_size, "length_multiple": full,
               "fixed_tables": True}
    train = SegmentBatches(load_split(folder, "train"), shuffle=True, seed=seed,
                           max_segments=settings.max_train_segments,
                           harmony_dropout=settings.harmony_dropout, **batches)
    validation = SegmentBatches(load_split(folder, "validation"), shuffle=False,
                                max_segments=settings.max_validation_segments, **batches)

    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(seed)
    model = compile_model(build_model(config), settings)

    def validation_loss() -> float:
        losses, tokens = [], []
        for index in range(len(validation)):
            inputs, target = validation[index]
            losses.append(float(np.ravel(model.test_on_batch(inputs, target))[0]))
            tokens.append(int((target != 0).sum()))
        return float(np.average(losses, weights=tokens))

    began, curve, done = time.perf_counter(), [], 0
    while done < steps:
        for index in range(len(train)):
            if done == steps:
                break
            model.train_on_batch(*train[index])
            done += 1
            if done % max(1, steps // 4) == 0:
                curve.append([done, round(validation_loss(), 4)])
        train.on_epoch_end()
    keras.mixed_precision.set_global_policy("float32")
    return {
        "precision": precision,
        "seed": seed,
        "steps": steps,
        "seconds": round(time.perf_counter() - began, 1),
        "val_loss": curve,
        "final_val_loss": curve[-1][1],
    }


def worker(args: argparse.Namespace) -> int:
    """Inside one backend's process: every row, written to ``args.worker_out``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    import keras

    import pianoacc_utils  # noqa: F401  (sets the backend up)

    rows, losses = [], []
    if args.steps > 0:
        for profile_name in args.profiles:
            for kind in args.kinds:
                for precision in args.precisions:
                    row = time_steps(profile_name, kind, precision, args.warmup, args.steps)
                    rows.append(row)
                    print(
                        f"{keras.config.backend():<11}{profile_name:<7}{kind:<12}{precision:<16}"
                        f"{row['step_seconds_median']:8.3f} s/step ({row['step_seconds_min']:.3f}"
                        f"-{row['step_seconds_max']:.3f}) {row['tokens_per_second']:9.0f} tokens/s",
                        flush=True,
                    )
    if args.loss_check:
        for seed in range(args.loss_seeds):
            for precision in args.precisions:
                losses.append(loss_run(precision, seed, args.loss_steps))
                print(f"loss check {precision} seed {seed}: val_loss {losses[-1]['val_loss']}",
                      flush=True)
    payload = {"backend": keras.config.backend(), "rows": rows, "loss_check": losses,
               "versions": versions()}
    Path(args.worker_out).write_text(json.dumps(payload))
    return 0


def run_backend(backend: str, args: argparse.Namespace, loss_check: bool) -> dict:
    """This script as a worker process with ``KERAS_BACKEND=backend``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        command = [
            sys.executable, __file__, "--worker-out", str(out), "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--profiles", *args.profiles, "--kinds", *args.kinds,
            "--precisions", *args.precisions, "--loss-steps", str(args.loss_steps),
            "--loss-seeds", str(args.loss_seeds),
        ]
        if loss_check:
            command.append("--loss-check")
        env = {**os.environ, "KERAS_BACKEND": backend, "MPLBACKEND": "Agg"}
        subprocess.run(command, check=True, env=env, cwd=ROOT)
        return json.loads(out.read_text())


def fastest(rows: list[dict]) -> dict:
    """Per profile and kind: the fastest backend and precision (median step)."""
    best: dict[str, dict] = {}
    for row in rows:
        key = f"{row['profile']}/{row['kind']}"
        if key not in best or row["tokens_per_second"] > best[key]["tokens_per_second"]:
            best[key] = row
    return {
        key: {k: row[k] for k in ("backend", "precision", "tokens_per_second")}
        for key, row in best.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--profiles", nargs="+", default=list(PROFILE_NAMES))
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (the first compiles)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row (0: none)")
    parser.add_argument("--loss-check", action="store_true")
    parser.add_argument("--loss-backend", default="jax")
    parser.add_argument("--loss-steps", type=int, default=200)
    parser.add_argument("--loss-seeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_out:
        return worker(args)

    began, load_before = time.perf_counter(), load_average()
    rows, loss_check, library_versions = [], [], {}
    for backend in args.backends:
        result = run_backend(backend, args, args.loss_check and backend == args.loss_backend)
        rows += [{"backend": result["backend"], **row} for row in result["rows"]]
        loss_check += [{"backend": result["backend"], **row} for row in result["loss_check"]]
        library_versions[result["backend"]] = result["versions"]
    payload = {
        "machine": {"processor": processor(), "load_average_before": load_before,
                    "load_average_after": load_average()},
        "versions": library_versions,
        "data_profile": DATA_PROFILE,
        "seconds": round(time.perf_counter() - began, 1),
        "fastest": fastest(rows),
        "rows": rows,
        "loss_check": loss_check,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(json.dumps(payload["fastest"], indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
