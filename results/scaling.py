"""FNet against the Transformer at four model sizes and token budgets up to the shipped runs'.

    python results/scaling.py [--hours H] [--sizes xs s]   # train (resuming), fit, write the JSON
    python results/scaling.py --sizes l --until 4000000     # the larger size, as far as 4M tokens
    python results/scaling.py --sizes s --encoders fnet     # one encoder's run
    python results/scaling.py --speed    # measure seconds per token again (an idle machine)
    python results/scaling.py --fit      # only refit and rewrite from the cached runs

Data: the ``small`` profile's prepared split (8-bar segments of all songs, the data of
the shipped models). Sizes (:data:`SIZES`): the small profile's model as shipped (``m``,
1.06M parameters), two narrower, shallower ones (``xs``, ``s``) and the ``cpu``
profile's width and depth (``l``, 6.9M): about 75x in parameters. Each size and encoder
trains once with batch 16, peak learning rate 1e-3 after 100 warm-up steps,
inverse-square-root decay (no run length in the schedule: the model at each budget is
what a run of that budget gives, :func:`pianoacc_utils.training.scaling.train_to_budgets`),
and is measured on a fixed 256-segment validation subset at :data:`BUDGETS` target
tokens, up to the 41M the shipped runs saw (16 epochs); past the first epoch segments
are seen again, as in the shipped runs.

Runs take hours (the whole campaign: many sittings on 2 CPU cores), so each one resumes:
its model, optimizer state and counters are saved in ``<cache>/scaling/<encoder>_<size>/``
(``<cache>``: ``PIANOACC_CACHE``, else ``cache/`` in the checkout)
at every budget and every :data:`CHECKPOINT_STEPS` steps, and ``--hours`` stops the
invocation after that much training, leaving every run resumable (run the same command
again). The smaller sizes run first. Every sitting of a run records the processor,
backend and precision it ran on (machines differ).

What each run has measured is written to ``results/scaling_runs/<encoder>_<size>.json``
after every sitting, to be committed: a fresh checkout has no cache, so a run whose saved
state is gone starts again from its first step, but a finished run is never trained
again and the fit reads the committed records.

Every size up to the shipped one (``xs``, ``s``, ``m``) is fitted only once it has reached
every budget; the larger ``l`` goes as far as the time allows (``--until``) and is fitted
from :data:`LARGER_MIN_BUDGETS` budgets on. The report is written once each encoder has
:data:`MIN_SIZES` sizes spanning :data:`MIN_SPAN` x in parameters, one of them larger than
the shipped model (:func:`fit_gaps`); a size that is not ready is named in it as left out.

The fit is judged out of sample (:func:`held_out_check`): the largest budget each size
has reached is held out, the law is fitted to the rest and predicts it; a law whose
held-out error falls outside its own 95% interval is reported as failing.

Compute is measured apart from the runs, on one median-length batch per size and
encoder (seconds per target token, fastest of 5 steps after 2 warm-up steps), because
the runs' own wall time includes compilation and whatever else shares the machine; the
first fit measures it (``results/scaling_runs/speed.json``, with the processor) unless
``--speed`` did already.

Runs are recorded one per size and encoder in ``results/scaling_runs/`` (an interrupted
invocation starts again at the first unfinished run). The committed 2M-token campaign took
about 50 minutes on 2 CPU cores under JAX; to 41M tokens ``xs``, ``s`` and ``m`` take
about 10 hours, ``l`` longer (``docs/training.md``). Writes ``results/scaling.json``.
"""

from __future__ import annotations

import os

DECIDES_ON = "validation"
"""The split this script chooses on (the scaling law's fit, on validation loss), ``None`` where
it chooses nothing; ``tests/test_project.py`` checks that no script chooses on the test
split."""

os.environ.setdefault("KERAS_BACKEND", "jax")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from machine import load_average, processor, versions  # noqa: E402

from pianoacc_utils.common import cache_dir, write_json  # noqa: E402
from pianoacc_utils.models import KINDS, build_model, count_parameters  # noqa: E402
from pianoacc_utils.prepare import PrepareConfig, load_split, prepare  # noqa: E402
from pianoacc_utils.training import (  # noqa: E402
    PROFILES,
    SegmentBatches,
    TrainConfig,
    median_length_batch,
)
from pianoacc_utils.training import scaling  # noqa: E402
from pianoacc_utils.training.loss import compile_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "scaling.json"
RUNS = ROOT / "results" / "scaling_runs"
CACHE = cache_dir() / "scaling"  # PIANOACC_CACHE, else cache/ in the checkout
SMALL = PROFILES["small"]
SIZES = {
    "xs": dict(hidden_dim=32, num_heads=2, intermediate_dim=128, encoder_layers=1, decoder_layers=1),
    "s": dict(hidden_dim=64, num_heads=2, intermediate_dim=256, encoder_layers=2, decoder_layers=2),
    "m": {},  # the small profile's model, as shipped
    "l": {field: getattr(PROFILES["cpu"].model, field)  # the cpu profile's width and depth
          for field in ("hidden_dim", "num_heads", "intermediate_dim", "encoder_layers",
                        "decoder_layers")},
}
BUDGETS = (250_000, 500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000, 16_000_000,
           41_000_000)
"""Target tokens seen at which the validation loss is measured: doubling, then the
shipped runs' 41M (16 epochs of the split)."""
CHECKPOINT_STEPS = 200
"""Optimizer steps between saves of a run (besides one at every budget)."""
SETTINGS = TrainConfig(batch_size=16, learning_rate=1e-3, warmup_steps=100, seed=909,
                       harmony_dropout=SMALL.train.harmony_dropout, length_multiple=128)
VALIDATION_SEGMENTS = 256
SHIPPED_SIZE = "m"
"""The size of the shipped models; sizes after it in :data:`SIZES` are larger."""
LARGER_MIN_BUDGETS = 3
"""Budgets a run larger than the shipped model needs before the fit uses it (one held out)."""
MIN_SIZES = 3
MIN_SPAN = 10.0
"""What the fit needs per encoder: this many sizes, spanning this factor in parameters."""
EQUAL_TIME_HOURS = (1.0, 10.0, 100.0)
"""Hours of training on the measuring machine at which the law compares every size
(:func:`equal_time`): a sitting, a few sittings, a long campaign."""
ORIGINAL_EPOCHS = 695
ORIGINAL_TOKENS = 1024
"""The original's 695 epochs of 1024-token sequences (its budget, below, in our data)."""


def size_config(size: str, kind: str):
    return dataclasses.replace(SMALL.model_config(kind), **SIZES[size])


def batches(split, config, shuffle: bool, segments: int | None = None) -> SegmentBatches:
    return SegmentBatches(split, config, SETTINGS.batch_size if shuffle else 32, shuffle=shuffle,
                          seed=SETTINGS.seed, length_multiple=SETTINGS.length_multiple,
                          max_segments=segments, fixed_tables=True,
                          harmony_dropout=SETTINGS.harmony_dropout if shuffle else 0.0)


def seconds_per_token(config, train) -> float:
    """Fastest of 5 timed training steps on the median-length batch, per target token."""
    inputs, target = median_length_batch(train)
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(config), SETTINGS)
    for _ in range(2):
        model.train_on_batch(inputs, target)
    times = []
    for _ in range(5):
        began = time.perf_counter()
        model.train_on_batch(inputs, target)
        times.append(time.perf_counter() - began)
    return min(times) / int((target != 0).sum())


def shipped_check(kind: str, validation) -> dict:
    """The shipped run of ``kind``: its size, the tokens it saw, its loss on our subset."""
    run = ROOT / "pretrained" / kind
    model = keras.saving.load_model(run / "model.keras")
    epochs = len((run / "history.csv").read_text().strip().splitlines()) - 1
    compile_model(model, SETTINGS)
    split = load_split(prepare(SMALL.prepare, progress=False), "train")
    per_epoch = SegmentBatches(split, model.config, SMALL.train.batch_size, shuffle=False).num_tokens
    return {"parameters": count_parameters(model)["total"], "tokens": epochs * per_epoch,
            "epochs": epochs, "batch_size": SMALL.train.batch_size,
            "val_loss": round(scaling.validation_loss(model, validation), 5)}


def train_runs(sizes: list[str], hours: float | None, until: int | None = None,
               kinds: tuple[str, ...] = KINDS) -> None:
    """Train (or go on training) every run of ``sizes`` and ``kinds``, smallest first, for at most
    ``hours`` of this invocation and to the budgets up to ``until`` tokens (``None``: all
    of :data:`BUDGETS`); each run's JSON is rewritten after every sitting."""
    budgets = [budget for budget in BUDGETS if until is None or budget <= until]
    if not budgets:
        raise SystemExit(f"--until {until}: below the smallest budget ({BUDGETS[0]:,} tokens)")
    folder = prepare(SMALL.prepare, progress=False)
    train_split, validation_split = load_split(folder, "train"), load_split(folder, "validation")
    CACHE.mkdir(parents=True, exist_ok=True)
    RUNS.mkdir(exist_ok=True)
    deadline = None if hours is None else time.perf_counter() + hours * 3600
    for size in sizes:
        for kind in kinds:
            path = RUNS / f"{kind}_{size}.json"
            earlier = json.loads(path.read_text()) if path.exists() else {}
            if reached_every_budget(earlier) or reached(earlier, budgets):
                continue
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                print(f"{kind} {size}: out of time; run again to go on", flush=True)
                continue
            config = size_config(size, kind)
            validation = batches(validation_split, config, False, VALIDATION_SEGMENTS)
            load = load_average()
            began = time.perf_counter()
            resuming = (CACHE / f"{kind}_{size}" / scaling.BUDGET_STATE).is_file()
            if earlier and not resuming:
                print(f"{kind} {size}: no saved state in {CACHE}; starting again from the "
                      "first step", flush=True)
            run = scaling.train_to_budgets(
                config, batches(train_split, config, True), validation, budgets, SETTINGS,
                report=lambda row: print(kind, size, row, flush=True),
                state_dir=CACHE / f"{kind}_{size}", checkpoint_steps=CHECKPOINT_STEPS,
                stop_after_seconds=left,
            )
            sitting = {"processor": processor(), "backend": keras.backend.backend(),
                       "precision": keras.mixed_precision.global_policy().name,
                       "seconds": round(time.perf_counter() - began, 1),
                       "load_average": [load, load_average()],
                       "budgets_reached": len(run["budgets"])}
            # A run that resumed adds a sitting; one started afresh (no saved state, e.g. a
            # fresh checkout's) does not inherit the sittings of what it replaces.
            sittings = earlier.get("sittings", []) if resuming else []
            # ``finished``: every budget of the campaign, not only those up to ``until``.
            run["finished"] = run["finished"] and reached(run, list(BUDGETS))
            run.update(kind=kind, size=size, model=SIZES[size], sittings=[*sittings, sitting],
                       seconds=round(sum(s["seconds"] for s in [*sittings, sitting]), 1))
            write_json(path, run)
            print(kind, size, run["parameters"]["total"],
                  [row["val_loss"] for row in run["budgets"]], f"{run['seconds']:.0f} s",
                  "finished" if run["finished"] else "to be continued", flush=True)


def measure_speed() -> dict:
    """Seconds per target token of every size and encoder, measured one after another
    (run it on an otherwise idle machine: ``--speed``)."""
    train_split = load_split(prepare(SMALL.prepare, progress=False), "train")
    speed = {"processor": processor(), "backend": keras.backend.backend(),
             "load_average_before": load_average()}
    for size in SIZES:
        for kind in KINDS:
            config = size_config(size, kind)
            speed[f"{kind}_{size}"] = seconds_per_token(config, batches(train_split, config, True))
            print(kind, size, f"{speed[f'{kind}_{size}'] * 1e6:.1f} us per token", flush=True)
    speed["load_average_after"] = load_average()
    RUNS.mkdir(exist_ok=True)
    write_json(RUNS / "speed.json", speed)
    return speed


def original_budget() -> int:
    """Target tokens of 695 epochs over our 32-bar training split cut at 1024 tokens."""
    config = PrepareConfig(bars_per_segment=32, hop_bars=32, max_tokens=ORIGINAL_TOKENS)
    split = load_split(prepare(config, progress=False), "train")
    tokens = sum(min(len(split.accompaniment(i)) + 1, ORIGINAL_TOKENS) for i in range(len(split)))
    return ORIGINAL_EPOCHS * tokens


def predict(n, d, loss, targets: dict) -> tuple:
    """The law fitted to the points, and its prediction at each named ``(parameters,
    tokens)`` with 68% and 95% bootstrap intervals."""
    law = scaling.fit_scaling_law(n, d, loss)
    draws = scaling.bootstrap_losses(n, d, loss, list(targets.values()))
    return law, {
        name: {"parameters": int(p), "tokens": int(t),
               "predicted": round(float(law.loss(p, t)), 4),
               "interval_68": [round(float(v), 4) for v in np.percentile(draws[:, i], [16, 84])],
               "interval_95": [round(float(v), 4) for v in np.percentile(draws[:, i], [2.5, 97.5])]}
        for i, (name, (p, t)) in enumerate(targets.items())
    }


def rms_residual(law, n, d, loss) -> float:
    return round(float(np.sqrt(np.mean((np.asarray(loss) / law.loss(n, d) - 1) ** 2))), 5)


def held_out_check(runs: list[dict]) -> dict:
    """The law judged out of sample: each size's largest measured budget held out, the
    law fitted to every other point and asked for the held-out ones, with its 68% and 95%
    intervals. ``fails`` when a measured loss lies outside its 95% interval."""
    held, kept = [], []
    for run in runs:
        rows = run["budgets"]
        for position, row in enumerate(rows):
            point = (run["parameters"]["total"], row["tokens"], row["val_loss"])
            (held if position == len(rows) - 1 and len(rows) > 2 else kept).append(
                (run["size"], point))
    n, d, loss = (np.array(column, float) for column in zip(*(p for _, p in kept)))
    targets = {f"{size}, {int(point[1]):,} tokens": point[:2] for size, point in held}
    law, predictions = predict(n, d, loss, targets)
    for (size, point), (name, prediction) in zip(held, predictions.items()):
        measured = point[2]
        low68, high68 = prediction["interval_68"]
        low95, high95 = prediction["interval_95"]
        prediction.update(
            measured=measured,
            relative_error=round(prediction["predicted"] / measured - 1, 4),
            inside_68=bool(low68 <= measured <= high68),
            inside_95=bool(low95 <= measured <= high95),
        )
    return {
        "law_without_held_out": law.to_dict(),
        "held_out": predictions,
        "fails": not all(p["inside_95"] for p in predictions.values()),
    }


def fit() -> dict:
    records = recorded_runs()
    runs = [run for run in records if ready_for_fit(run)]
    speed_path = RUNS / "speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.exists() else {}
    if any(f"{run['kind']}_{run['size']}" not in speed for run in runs):
        speed = measure_speed()  # a size measured for the first time: all again, alike
    validation_split = load_split(prepare(SMALL.prepare, progress=False), "validation")
    for run in runs:
        run["seconds_per_token"] = speed.get(f"{run['kind']}_{run['size']}")
    shipped_runs = {
        kind: shipped_check(kind, batches(validation_split, size_config(SHIPPED_SIZE, kind),
                                          False, VALIDATION_SEGMENTS))
        for kind in KINDS
    }
    sizes = {name: {kind: count_parameters(build_model(PROFILES[name].model_config(kind)))["total"]
                    for kind in KINDS} for name in ("cpu", "full")}
    original = original_budget()
    encoders = {}
    for kind in KINDS:
        mine = [run for run in runs if run["kind"] == kind]
        points = [(run["parameters"]["total"], row["tokens"], row["val_loss"])
                  for run in mine for row in run["budgets"]]
        n, d, loss = (np.array(column, float) for column in zip(*points))
        shipped = shipped_runs[kind]
        # First the runs alone, tested on the shipped run they never saw; then with the
        # shipped run as a thirteenth point, for the predictions far beyond both.
        law, check = predict(n, d, loss, {
            "shipped run (out of sample)": (shipped["parameters"], shipped["tokens"]),
        })
        check["shipped run (out of sample)"]["measured"] = shipped["val_loss"]
        with_shipped = [np.append(column, value) for column, value in
                        zip((n, d, loss), (shipped["parameters"], shipped["tokens"], shipped["val_loss"]))]
        law_all, beyond = predict(*with_shipped, {
            "cpu profile size, the original's budget": (sizes["cpu"][kind], original),
            "full profile size, the original's budget": (sizes["full"][kind], original),
        })
        encoders[kind] = {
            "out_of_sample": held_out_check(mine),
            "law": law.to_dict(),
            "relative_rms_residual": rms_residual(law, n, d, loss),
            "law_with_shipped_run": law_all.to_dict(),
            "relative_rms_residual_with_shipped_run": rms_residual(law_all, *with_shipped),
            "predictions": {**check, **beyond},
            "equal_time": equal_time(n, d, loss, kind, speed),
        }
    return {"original_budget_tokens": original, "profile_sizes": sizes, "fits": encoders,
            "speed_load_average": [speed["load_average_before"], speed["load_average_after"]],
            "shipped_runs": shipped_runs, "runs": runs,
            "left_out": {f"{run['kind']}_{run['size']}": f"{len(run['budgets'])} of {len(BUDGETS)} "
                         "budgets" for run in records if not ready_for_fit(run)}}


def equal_time(n, d, loss, kind: str, speed: dict) -> dict:
    """Which size the law favours for a given time: every size of :data:`SIZES` trained
    for each of :data:`EQUAL_TIME_HOURS` on the measuring machine (tokens = seconds / its
    seconds per token), predicted by the law fitted to the campaign's points, with its
    intervals; ``favoured``: the size predicted lowest for each time."""
    parameters = {size: count_parameters(build_model(size_config(size, kind)))["total"]
                  for size in SIZES}
    targets = {f"{size}, {hours:g} h": (parameters[size], hours * 3600 / speed[f"{kind}_{size}"])
               for hours in EQUAL_TIME_HOURS for size in SIZES}
    _, predictions = predict(n, d, loss, targets)
    for hours in EQUAL_TIME_HOURS:
        for size in SIZES:
            predictions[f"{size}, {hours:g} h"].update(size=size, hours=hours)
    favoured = {
        f"{hours:g} h": min(SIZES, key=lambda size: predictions[f"{size}, {hours:g} h"]["predicted"])
        for hours in EQUAL_TIME_HOURS
    }
    return {"predictions": predictions, "favoured": favoured,
            "processor": speed.get("processor"), "backend": speed.get("backend")}


def reached(run: dict, budgets: list[int]) -> bool:
    """Whether a run's JSON (``{}``: none yet) has measured every budget of ``budgets``."""
    return set(budgets) <= {row["budget"] for row in run.get("budgets", [])}


def reached_every_budget(run: dict) -> bool:
    """Whether a run's JSON (``{}``: none yet) has measured every budget of :data:`BUDGETS`."""
    return reached(run, list(BUDGETS))


def larger_than_shipped(size: str) -> bool:
    return list(SIZES).index(size) > list(SIZES).index(SHIPPED_SIZE)


def ready_for_fit(run: dict) -> bool:
    """A size up to the shipped one once it has reached every budget (a partial run would
    mix budgets); a larger one from :data:`LARGER_MIN_BUDGETS` budgets on (as far as the
    time allowed)."""
    if larger_than_shipped(run["size"]):
        return len(run.get("budgets", [])) >= LARGER_MIN_BUDGETS
    return reached_every_budget(run)


def fit_gaps(runs: list[dict]) -> list[str]:
    """What keeps ``runs`` (run JSONs) from a fit that can judge sizes, per encoder: fewer
    than :data:`MIN_SIZES` sizes ready, a span under :data:`MIN_SPAN` x in parameters, or
    no size larger than the shipped one; empty when the fit can be written."""
    gaps = []
    for kind in KINDS:
        ready = {run["size"]: run["parameters"]["total"] for run in runs
                 if run["kind"] == kind and ready_for_fit(run)}
        if len(ready) < MIN_SIZES:
            gaps.append(f"{kind}: {len(ready)} sizes ready ({', '.join(ready) or 'none'}), "
                        f"{MIN_SIZES} needed")
        elif max(ready.values()) < MIN_SPAN * min(ready.values()):
            gaps.append(f"{kind}: the sizes ready span {max(ready.values()) / min(ready.values()):.1f}x, "
                        f"{MIN_SPAN:g}x needed")
        if not any(larger_than_shipped(size) for size in ready):
            gaps.append(f"{kind}: no size larger than the shipped {SHIPPED_SIZE} is ready")
    return gaps


def recorded_runs() -> list[dict]:
    """The run JSONs of ``results/scaling_runs/``, smallest size first."""
    paths = [RUNS / f"{kind}_{size}.json" for size in SIZES for kind in KINDS]
    return [json.loads(path.read_text()) for path in paths if path.exists()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="measure seconds per token again")
    parser.add_argument("--fit", action="store_true", help="only refit from the cached runs")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--encoders", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument("--hours", type=float, help="stop training after this long (resumable)")
    parser.add_argument("--until", type=int, metavar="TOKENS",
                        help="train only to the budgets up to this many tokens (resumable)")
    args = parser.parse_args()
    if args.speed:
        measure_speed()
    elif not args.fit:
        train_runs(args.sizes, args.hours, args.until, tuple(args.encoders))
    gaps = fit_gaps(recorded_runs())
    if gaps:  # a fit over too few sizes cannot judge sizes: keep the last whole report
        print(f"not ready to fit: {'; '.join(gaps)}; {OUT.name} left as it is "
              "(run again to go on)", flush=True)
        return
    report = {
        "command": "python results/scaling.py",
        "backend": keras.backend.backend(),
        "machine": {"processor": processor(), "versions": versions()},
        "data": {"profile": "small", "prepare": dataclasses.asdict(SMALL.prepare),
                 "validation_segments": VALIDATION_SEGMENTS},
        "settings": dataclasses.asdict(SETTINGS),
        "budgets": list(BUDGETS),
        "sizes": SIZES,
        **fit(),
    }
    write_json(OUT, report)
    for kind, entry in report["fits"].items():
        print(kind, entry["law"], json.dumps(entry["predictions"], indent=1))


if __name__ == "__main__":
    main()
