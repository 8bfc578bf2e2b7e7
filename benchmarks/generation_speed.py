"""Generation speed: cached, compiled decoding against naive re-decoding, on this machine.

Builds an untrained model of the ``cpu`` training profile's size (the decoder length
raised so that 1024 tokens fit) and times

* cached decoding (:class:`pianoacc_utils.generation.CachedDecoder`: per-layer key/value
  caches updated in place, keras-hub's sampler, the whole sampling loop compiled with
  XLA): one call generating the full
  budget, after a first call that compiles (its extra time is reported as
  ``compile_seconds``), greedy and with the default top-p sampling; and greedy with
  the profile's own decoder length (511 tokens + START), since a cached step costs
  more the longer the cache it attends over;
* naive decoding (:func:`pianoacc_utils.generation.naive_decode`: the whole decoder
  re-run on the growing prefix for every token): the first ``--naive-tokens`` tokens
  are timed directly. A naive step costs more the longer the prefix, so the rate
  for the full budget is extrapolated from the time of single steps measured at
  several prefix lengths (linear interpolation between them, summed over every
  prefix length from 1 to the budget).

Every time is taken as wall time and as CPU time of this process: on a shared
machine other processes inflate the first much more than the second. Each figure
is the fastest of ``--repeats`` runs.

END is given a large negative logit bias so that every run generates exactly the
budget (the model is untrained: its choices do not matter, only their cost).

Run: ``.venv/bin/python benchmarks/generation_speed.py`` (about 2 minutes on 2 CPU
cores); writes ``benchmarks/results/generation_speed.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
from keras import ops  # noqa: E402

from pianoacc_utils.common import config_dict, write_json  # noqa: E402
from pianoacc_utils.generation import (  # noqa: E402
    GREEDY,
    CachedDecoder,
    SamplingConfig,
    mask_logits,
    naive_decode,
    pad_melodies,
)
from pianoacc_utils.models import AccompanimentModel, build_model, count_parameters  # noqa: E402
from pianoacc_utils.tokenizer import EventTokenizer  # noqa: E402
from pianoacc_utils.training import PROFILES  # noqa: E402

TOKENIZER = EventTokenizer()
NO_LIMIT = 1 << 30
"""A window limit in grid steps that is never reached (no forced END)."""

PREFIX_LENGTHS = (64, 256, 512, 768, 1024)
"""Prefix lengths (tokens) at which a single naive step is timed."""

GOAL_SPEEDUP = 30.0
GOAL_SECONDS_1024 = 2.0


def benchmark_model(kind: str, tokens: int, melody_tokens: int) -> AccompanimentModel:
    """An untrained model of the cpu profile's size whose decoder fits ``tokens`` + START,
    with END made impossible (logit bias -1e4)."""
    config = PROFILES["cpu"].model_config(kind)
    config = dataclasses.replace(
        config,
        accompaniment_length=max(config.accompaniment_length, tokens + 1),
        melody_length=max(config.melody_length, melody_tokens),
        dropout=0.0,
    )
    keras.utils.set_random_seed(909)
    model = build_model(config)
    kernel, bias = model.logits_layer.get_weights()
    bias[TOKENIZER.end_id] = -1e4
    model.logits_layer.set_weights([kernel, bias])
    return model


@dataclass(frozen=True)
class Timing:
    """Seconds of one measured piece of work: ``wall`` (elapsed) and ``cpu`` (CPU time of
    this process, all threads). Other processes on a shared machine inflate the wall
    time but hardly the CPU time, which on an idle machine bounds the wall time from
    above (equal when the work runs on one thread)."""

    wall: float
    cpu: float

    def scaled(self, factor: float) -> "Timing":
        return Timing(self.wall * factor, self.cpu * factor)


def timed(run: Callable[[], Any]) -> tuple[Timing, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), result


def best_of(run: Callable[[], Any], repeats: int) -> tuple[Timing, Any]:
    """Shortest wall and CPU times of ``repeats`` calls (each its own minimum), and the
    last call's result: other processes only ever add time, so the fastest run is the
    best estimate of the cost itself."""
    timings, result = [], None
    for _ in range(repeats):
        timing, result = timed(run)
        timings.append(timing)
    return Timing(min(t.wall for t in timings), min(t.cpu for t in timings)), result


def rates(tokens: int, timing: Timing) -> dict[str, float]:
    return {
        "seconds": timing.wall,
        "cpu_seconds": timing.cpu,
        "tokens_per_s": tokens / timing.wall,
        "tokens_per_cpu_s": tokens / timing.cpu,
    }


def time_cached(
    model: AccompanimentModel, melody: np.ndarray, sampling: SamplingConfig, tokens: int,
    repeats: int,
) -> dict[str, float]:
    """Compile time and steady time of generating ``tokens`` tokens in one cached call."""
    decoder = CachedDecoder(model, sampling)

    def run() -> list[int]:
        return decoder.decode(melody, [[]], [NO_LIMIT], max_length=tokens + 1)[0]

    first, out = timed(run)
    assert len(out) == tokens, len(out)
    best, out = best_of(run, repeats)
    assert len(out) == tokens, len(out)
    return {**rates(tokens, best), "compile_seconds": max(first.wall - best.wall, 0.0)}


def naive_step(
    model: AccompanimentModel, melody: np.ndarray, length: int, repeats: int
) -> Timing:
    """Time of one naive step (as in ``naive_decode``) on a prefix of ``length`` tokens."""
    encoder_output = model.encode(ops.convert_to_tensor(melody))
    prefix = np.random.default_rng(length).integers(3, 259, (1, length)).astype(np.int32)
    prefix[0, 0] = TOKENIZER.start_id
    remaining = np.array([NO_LIMIT], np.int32)

    def step() -> int:
        decoder = ops.convert_to_tensor(prefix)
        logits = model.decode(decoder, encoder_output, ops.convert_to_tensor(melody))[:, -1, :]
        logits = mask_logits(logits, ops.convert_to_tensor(remaining))
        return int(np.argmax(ops.convert_to_numpy(logits)[0]))

    step()  # warm-up for this shape
    return best_of(step, repeats)[0]


def extrapolate(step_seconds: dict[int, float], tokens: int) -> float:
    """Seconds for ``tokens`` naive steps: step cost interpolated over prefix lengths 1..tokens."""
    lengths = sorted(step_seconds)
    costs = [step_seconds[n] for n in lengths]
    return float(np.interp(np.arange(1, tokens + 1), lengths, costs).sum())


def time_naive(
    model: AccompanimentModel, melody_ids: list[int], tokens: int, naive_tokens: int,
    repeats: int,
) -> dict[str, Any]:
    """Naive decoding: the first ``naive_tokens`` timed, ``tokens`` extrapolated."""
    naive_decode(model, melody_ids, NO_LIMIT, 4)  # warm-up (first eager calls)
    measured, out = timed(lambda: naive_decode(model, melody_ids, NO_LIMIT, naive_tokens + 1))
    assert len(out) == naive_tokens, len(out)
    melody = pad_melodies([melody_ids], model.config.melody_length)
    steps = {n: naive_step(model, melody, n, repeats) for n in PREFIX_LENGTHS if n <= tokens}
    total = Timing(
        extrapolate({n: t.wall for n, t in steps.items()}, tokens),
        extrapolate({n: t.cpu for n, t in steps.items()}, tokens),
    )
    return {
        "measured": {"tokens": naive_tokens, **rates(naive_tokens, measured)},
        "step_seconds_by_prefix_length": {str(n): t.wall for n, t in steps.items()},
        "step_cpu_seconds_by_prefix_length": {str(n): t.cpu for n, t in steps.items()},
        "extrapolated": {"tokens": tokens, **rates(tokens, total)},
    }


def machine() -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": cores,
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="fnet", choices=("fnet", "transformer"))
    parser.add_argument("--tokens", type=int, default=1024, help="generation budget (tokens)")
    parser.add_argument("--naive-tokens", type=int, default=96, help="tokens naive decodes")
    parser.add_argument("--melody-tokens", type=int, default=128, help="melody length (tokens)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (the fastest counts)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "generation_speed.json"
    )
    args = parser.parse_args(argv)

    before = machine()
    model = benchmark_model(args.kind, args.tokens, args.melody_tokens)
    melody_ids = np.random.default_rng(0).integers(3, 259, args.melody_tokens).tolist()
    melody = pad_melodies([melody_ids], model.config.melody_length)
    print(f"model: {args.kind}, {count_parameters(model)['total']:,} parameters; "
          f"{before['cores']} cores, load average {before['load_average_1_5_15_min']}")

    greedy = time_cached(model, melody, GREEDY, args.tokens, args.repeats)
    print(f"cached greedy: {greedy['seconds']:.2f} s ({greedy['cpu_seconds']:.2f} CPU s) for "
          f"{args.tokens} tokens, compile {greedy['compile_seconds']:.1f} s")
    top_p = time_cached(model, melody, SamplingConfig(), args.tokens, args.repeats)
    print(f"cached top-p:  {top_p['seconds']:.2f} s ({top_p['cpu_seconds']:.2f} CPU s)")
    # The cost of a cached step grows with the decoder buffer (the attention runs
    # over all of it): also time the profile's own decoder length.
    profile_length = PROFILES["cpu"].model.accompaniment_length - 1
    short = time_cached(model, melody, GREEDY, profile_length, args.repeats)
    print(f"cached greedy, {profile_length} tokens: {short['seconds']:.2f} s "
          f"({short['cpu_seconds']:.2f} CPU s)")
    naive = time_naive(model, melody_ids, args.tokens, args.naive_tokens, args.repeats)
    measured, extrapolated = naive["measured"], naive["extrapolated"]
    print(f"naive: {measured['tokens_per_s']:.1f} tokens/s over the first {args.naive_tokens} "
          f"tokens; {extrapolated['tokens_per_s']:.1f} tokens/s "
          f"({extrapolated['tokens_per_cpu_s']:.1f} per CPU s) extrapolated to {args.tokens}")

    per_1024 = 1024 / args.tokens
    speedup = greedy["tokens_per_s"] / extrapolated["tokens_per_s"]
    speedup_cpu = greedy["tokens_per_cpu_s"] / extrapolated["tokens_per_cpu_s"]
    result = {
        "tokens": args.tokens,
        "tokens_per_s_cached": greedy["tokens_per_s"],
        "tokens_per_s_naive": extrapolated["tokens_per_s"],
        "speedup": speedup,
        "seconds_for_1024_cached": greedy["seconds"] * per_1024,
        "compile_seconds": greedy["compile_seconds"],
        "cpu_time": {
            "tokens_per_cpu_s_cached": greedy["tokens_per_cpu_s"],
            "tokens_per_cpu_s_naive": extrapolated["tokens_per_cpu_s"],
            "speedup": speedup_cpu,
            "cpu_seconds_for_1024_cached": greedy["cpu_seconds"] * per_1024,
        },
        "cached_greedy": greedy,
        "cached_top_p": top_p,
        "cached_greedy_at_cpu_profile_length": {"tokens": profile_length, **short},
        "naive": naive,
        "speedup_vs_first_naive_tokens": greedy["tokens_per_s"] / measured["tokens_per_s"],
        "goals": {
            f"speedup_at_least_{GOAL_SPEEDUP:g}x": {
                "wall": speedup >= GOAL_SPEEDUP, "cpu": speedup_cpu >= GOAL_SPEEDUP,
            },
            f"1024_tokens_under_{GOAL_SECONDS_1024:g}_s": {
                "wall": greedy["seconds"] * per_1024 < GOAL_SECONDS_1024,
                "cpu": greedy["cpu_seconds"] * per_1024 < GOAL_SECONDS_1024,
            },
        },
        "method": (
            "cached: fastest of repeated CachedDecoder.decode calls generating the whole budget "
            "(batch 1, END banned), after one compiling call; naive: naive_decode timed over the "
            "first naive tokens, and the full budget extrapolated from single-step times (fastest "
            "of the repeats) at several prefix lengths; speedup = cached greedy / naive "
            "extrapolated tokens per second, in wall time and in CPU time of this process"
        ),
        "backend": keras.config.backend(),
        "versions": {"keras": keras.__version__, **_backend_version()},
        "model": {**config_dict(model.config), "parameters": count_parameters(model)["total"]},
        "melody_tokens": args.melody_tokens,
        "machine": {**before, "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "note": (
            "load averages before and after the run show whether other processes shared the "
            "cores; they inflate wall times much more than CPU times"
        ),
    }
    write_json(args.out, result)
    print(f"speedup {speedup:.0f}x wall, {speedup_cpu:.0f}x CPU; 1024 tokens in "
          f"{result['seconds_for_1024_cached']:.2f} s wall, "
          f"{result['cpu_time']['cpu_seconds_for_1024_cached']:.2f} CPU s; wrote {args.out}")
    return 0


def _backend_version() -> dict[str, str]:
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return {"tensorflow": tf.__version__}
    if backend == "jax":
        import jax

        return {"jax": jax.__version__}
    return {}


if __name__ == "__main__":
    sys.exit(main())
