"""Scaling curves: validation loss against model size and training tokens.

Two pieces. :func:`train_to_budgets` trains one model on a prepared split and measures
the validation loss each time the target tokens seen reach a budget. The learning-rate
schedule it uses (linear warm-up, then inverse square root) does not depend on the run's
length, so the model at a budget is the model a run of exactly that budget would give:
one run per model size yields a whole row of budgets.

:func:`fit_scaling_law` fits, per encoder, the form of Hoffmann et al. (2022),

    L(N, D) = E + A / N**alpha + B / D**beta

(N parameters, D target tokens seen; E the loss no model or data can remove), and
:func:`bootstrap_losses` refits it on resampled residuals to say how far a prediction
can be trusted, most of all far outside the measured sizes and budgets.
``results/scaling.py`` runs both and writes ``results/scaling.json``; notebook 05 plots it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pianoacc_utils.common import PianoaccError, write_json
from pianoacc_utils.models.config import count_parameters
from pianoacc_utils.models.seq2seq import build_model
from pianoacc_utils.training.batches import PAD_ID, SegmentBatches
from pianoacc_utils.training.checkpoints import load_checkpoint
from pianoacc_utils.training.loss import compile_model
from pianoacc_utils.training.profiles import TrainConfig

# --------------------------------------------------------------------------- training runs


def validation_loss(model: Any, batches: SegmentBatches) -> float:
    """Masked cross-entropy (nats per target token) over all of ``batches``, each batch
    weighted by its real target tokens, so that the figure does not depend on batching."""
    total, tokens = 0.0, 0
    for index in range(len(batches)):
        inputs, target = batches[index]
        real = int((target != PAD_ID).sum())
        logs = model.test_on_batch(inputs, target, return_dict=True)
        total += float(logs["loss"]) * real
        tokens += real
    return total / tokens


BUDGET_STATE = "budget_state.json"
"""The file of a resumable budget run (:func:`train_to_budgets` with ``state_dir``)."""


def train_to_budgets(
    model_config: Any,
    train_batches: SegmentBatches,
    validation_batches: SegmentBatches,
    budgets: Sequence[int],
    settings: TrainConfig,
    report: Callable[[dict[str, Any]], None] | None = None,
    state_dir: str | Path | None = None,
    checkpoint_steps: int | None = None,
    stop_after_seconds: float | None = None,
) -> dict[str, Any]:
    """Train a fresh ``model_config`` model (AdamW as :func:`compile_model` sets it up, with
    ``settings``' schedule) on ``train_batches`` until it has seen ``max(budgets)`` target
    tokens; at each budget, the validation loss. Epochs follow one another when the split
    runs out (``train_batches`` moves on to its next epoch).

    Returns ``parameters`` (:func:`count_parameters`), ``finished`` (every budget reached)
    and one row per budget reached: ``tokens`` (target tokens actually seen: the first
    step at or past the budget), ``steps``, ``epochs`` (passes over the split),
    ``val_loss``, ``train_seconds`` (wall time in training steps, compilation included,
    summed over sittings) and ``train_cpu_seconds`` (CPU time in them). ``report`` is
    called with each row as it is measured.

    Runs long enough to need several sittings resume: with ``state_dir``, the model with
    its optimizer state and the run's counters are saved there at every budget and every
    ``checkpoint_steps`` optimizer steps (:func:`save_budget_state`), and a later call
    with the same arguments goes on from the last save, replaying the batches a run that
    never stopped would have seen (their order is a function of the seed and the epoch).
    More budgets than before extend a run: the rows already measured are kept.
    ``stop_after_seconds``: save and return (``finished`` False) once this call has
    trained that long.
    """
    import keras

    if settings.decay != "inverse_sqrt":
        raise PianoaccError("budgets need a schedule that ignores the run's length: inverse_sqrt")
    budgets = sorted(int(b) for b in budgets)
    if not budgets or budgets[0] <= 0:
        raise PianoaccError(f"token budgets must be positive, got {budgets}")
    folder = None if state_dir is None else Path(state_dir)
    state = load_budget_state(folder) if folder is not None else None
    if state is None:
        keras.utils.set_random_seed(settings.seed)
        model = compile_model(build_model(model_config), settings)
        counters = {"seen": 0, "steps": 0, "wall": 0.0, "cpu": 0.0,
                    "epoch_start": train_batches.epoch, "rows": []}
    else:
        model, counters = state
        if model.config != model_config:
            raise PianoaccError(
                f"{folder}: the saved run is of another model ({model.config}); "
                "remove the folder to start this one afresh"
            )
        train_batches.seek(counters["epoch"], counters["next_batch"])
    rows = [row for row in counters["rows"] if row["budget"] in budgets]
    if [row["budget"] for row in rows] != budgets[: len(rows)]:
        raise PianoaccError(
            f"{folder}: the run measured budgets {[r['budget'] for r in counters['rows']]}; "
            f"a resumed run may only add larger ones, got {budgets}"
        )
    seen, steps = counters["seen"], counters["steps"]
    wall, cpu = counters["wall"], counters["cpu"]
    epoch_start = counters["epoch_start"]
    began_call = time.perf_counter()

    def save(next_batch: int) -> None:
        epoch = train_batches.epoch
        if next_batch >= train_batches.batches_per_epoch:
            epoch, next_batch = epoch + 1, 0
        save_budget_state(folder, model, {
            "seen": seen, "steps": steps, "wall": wall, "cpu": cpu,
            "epoch_start": epoch_start, "rows": rows, "epoch": epoch, "next_batch": next_batch,
        })

    while budgets[len(rows):]:
        first = train_batches.start_batch
        for index in range(len(train_batches)):
            inputs, target = train_batches[index]
            began, began_cpu = time.perf_counter(), time.process_time()
            model.train_on_batch(inputs, target)
            wall += time.perf_counter() - began
            cpu += time.process_time() - began_cpu
            seen += int((target != PAD_ID).sum())
            steps += 1
            measured = False
            while budgets[len(rows):] and seen >= budgets[len(rows)]:
                rows.append({
                    "budget": budgets[len(rows)], "tokens": seen, "steps": steps,
                    "epochs": round(train_batches.epoch - epoch_start
                                    + (first + index + 1) / train_batches.batches_per_epoch, 3),
                    "val_loss": round(validation_loss(model, validation_batches), 5),
                    "train_seconds": round(wall, 1), "train_cpu_seconds": round(cpu, 1),
                })
                measured = True
                if report is not None:
                    report(rows[-1])
            if folder is not None and (
                measured or (checkpoint_steps and steps % checkpoint_steps == 0)
            ):
                save(first + index + 1)
                out_of_time = (stop_after_seconds is not None
                               and time.perf_counter() - began_call >= stop_after_seconds)
                if out_of_time and budgets[len(rows):]:
                    return {"parameters": count_parameters(model), "budgets": rows,
                            "finished": False}
            if not budgets[len(rows):]:
                break
        else:
            train_batches.on_epoch_end()
    return {"parameters": count_parameters(model), "budgets": rows, "finished": True}


def save_budget_state(folder: Path, model: Any, counters: dict[str, Any]) -> None:
    """Save a budget run where it stands: the model with its optimizer state under a name
    that carries its optimizer step, then :data:`BUDGET_STATE` naming that file (written
    atomically: the commit), then older model files are removed, so that a crash at any
    point leaves the last committed state whole."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"budget_run.{counters['steps']}.keras"
    model.save(folder / name)
    write_json(folder / BUDGET_STATE, {**counters, "checkpoint": name})
    for stale in folder.glob("budget_run.*.keras"):
        if stale.name != name:
            stale.unlink()


def load_budget_state(folder: Path) -> tuple[Any, dict[str, Any]] | None:
    """The model and counters :func:`save_budget_state` last committed in ``folder``, or
    ``None`` when there are none; a damaged model file raises :class:`PianoaccError`
    naming it."""
    path = folder / BUDGET_STATE
    if not path.is_file():
        return None
    counters = json.loads(path.read_text())
    return load_checkpoint(folder / counters["checkpoint"]), counters


# --------------------------------------------------------------------------- the fit


@dataclass(frozen=True)
class ScalingLaw:
    """``L(N, D) = E + A / N**alpha + B / D**beta`` (losses in nats per target token)."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def loss(self, parameters: Any, tokens: Any) -> np.ndarray:
        n, d = np.asarray(parameters, float), np.asarray(tokens, float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def to_dict(self) -> dict[str, float]:
        return {key: float(f"{value:.6g}") for key, value in asdict(self).items()}


EXPONENT_BOUNDS = (0.05, 1.5)
"""Range allowed for alpha and beta: published fits of language and music models fall
well inside it, and an unbounded fit on few points can run off to extreme exponents."""


def _law(x: np.ndarray) -> ScalingLaw:
    e, a, alpha, b, beta = x
    return ScalingLaw(math.exp(e), math.exp(a), alpha, math.exp(b), beta)


def fit_scaling_law(
    parameters: Any, tokens: Any, losses: Any, start: ScalingLaw | None = None
) -> ScalingLaw:
    """Least squares on the log of the loss (relative errors, so that the large early
    losses do not outweigh the rest), from a grid of starting points, best fit kept
    (from ``start`` alone when given: a refit near a known solution).

    Needs at least six points spanning two or more sizes and two or more budgets
    (five constants are fitted); raises :class:`PianoaccError` otherwise.
    """
    from scipy.optimize import least_squares

    n, d, loss = (np.asarray(v, float) for v in (parameters, tokens, losses))
    if not (n.shape == d.shape == loss.shape) or n.ndim != 1:
        raise PianoaccError("parameters, tokens and losses must be equal-length lists")
    if len(loss) < 6 or len(set(n)) < 2 or len(set(d)) < 2:
        raise PianoaccError(
            f"a scaling fit needs 6+ points over 2+ sizes and 2+ budgets, got {len(loss)} "
            f"points, {len(set(n))} sizes, {len(set(d))} budgets"
        )
    if np.any(loss <= 0) or np.any(n <= 0) or np.any(d <= 0):
        raise PianoaccError("parameters, tokens and losses must be positive")
    target = np.log(loss)

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.log(_law(x).loss(n, d)) - target

    low, high = EXPONENT_BOUNDS
    bounds = ([-10, -10, low, -10, low], [math.log(loss.min()), 30, high, 30, high])
    if start is not None:
        starts = [[math.log(start.E), math.log(start.A), start.alpha, math.log(start.B), start.beta]]
    else:
        starts = [[math.log(max(floor * loss.min(), 1e-3)), 1.0, exponent, 1.0, exponent]
                  for floor in (0.0, 0.5, 0.9) for exponent in (0.1, 0.3, 0.6)]
    best = None
    for x0 in starts:
        x0 = np.clip(x0, np.array(bounds[0]) + 1e-6, np.array(bounds[1]) - 1e-6)
        fit = least_squares(residuals, x0, bounds=bounds)
        if best is None or fit.cost < best.cost:
            best = fit
    return _law(best.x)


def bootstrap_losses(
    parameters: Any,
    tokens: Any,
    losses: Any,
    at: Sequence[tuple[float, float]],
    draws: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """Predicted losses at each ``(parameters, tokens)`` of ``at`` under ``draws`` refits,
    each on the fitted losses times resampled relative residuals of the first fit (scaled
    up by ``sqrt(points / (points - 5))``: five fitted constants make residuals smaller
    than the noise): shape ``(draws, len(at))``. Its percentiles give the prediction's
    uncertainty as far as the measured points can tell it (not the error of the form;
    with a dozen points such intervals run narrow: on synthetic data with 1% noise the
    95% interval held the true loss at 8 of 10 noise draws inside the grid)."""
    n, d, loss = (np.asarray(v, float) for v in (parameters, tokens, losses))
    law = fit_scaling_law(n, d, loss)
    fitted = law.loss(n, d)
    ratios = 1 + (loss / fitted - 1) * math.sqrt(len(loss) / max(len(loss) - 5, 1))
    rng = np.random.default_rng(seed)
    where_n, where_d = (np.array([point[i] for point in at], float) for i in (0, 1))
    out = np.empty((draws, len(at)))
    for draw in range(draws):
        resampled = fitted * rng.choice(ratios, size=len(ratios), replace=True)
        out[draw] = fit_scaling_law(n, d, resampled, start=law).loss(where_n, where_d)
    return out
