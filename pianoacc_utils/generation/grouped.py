"""Decoding the rows of a batch in groups, one thread per group: the cores kept busy.

A decoding step of a small model is many small operations; a CPU backend spreads each of
them over its threads poorly, so one batched call of 8 candidate rows keeps two cores
only partly busy. :class:`GroupedDecoder` splits every batch's rows into ``groups``
contiguous groups and decodes them at once, one
:class:`~pianoacc_utils.generation.decoder.CachedDecoder` per group on its own thread
(the backends release Python's lock while a compiled program runs). On 2 Intel Xeon
cores a 120-bar melody at 8 candidates per window took 5.5 s to generate in two groups
against 8.3-9.7 s in one under JAX, and 4.8-5.2 s against 12-13.6 s under TensorFlow;
four groups were slower than two (``benchmarks/results/accompany_wait.json``).

Each group samples with a seed of its own (:func:`group_seed`; the first group's is
the sampling seed), so a fixed seed still gives a fixed output, but not the output of
one group: the random draws of a row depend on the rows decoded with it. With one row
(one window, one candidate) only the first group runs, and the output is the one
:class:`CachedDecoder` gives.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Sequence

import numpy as np

from pianoacc_utils import models
from pianoacc_utils.backends.timings import DecodeTiming
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.generation.decoder import CachedDecoder
from pianoacc_utils.generation.sampling import SamplingConfig

MAX_GROUPS = 2
"""Most groups :func:`default_groups` picks: measured best on 2 cores (4 were slower);
more cores are not measured."""

SEED_STRIDE = 1_000_003
"""Group ``g`` samples with seed ``seed + g * SEED_STRIDE``: streams apart from every
other seed a user would pick in turn (0, 1, 2, ...)."""


def default_groups() -> int:
    """Groups to decode in: the cores this process may run on, at most :data:`MAX_GROUPS`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_GROUPS, cores or 1))


def group_seed(seed: int | None, group: int) -> int | None:
    """The sampling seed of group ``group`` (``None`` stays unseeded)."""
    return None if seed is None else seed + group * SEED_STRIDE


class GroupedDecoder:
    """``decode`` as :class:`CachedDecoder`'s, its rows split over ``groups`` decoders
    that run at once; ``timings`` holds one record per call (its wall time, and whether
    any group made a program for a new shape)."""

    def __init__(
        self, model: models.AccompanimentModel, sampling: SamplingConfig = SamplingConfig(),
        groups: int | None = None,
    ) -> None:
        groups = default_groups() if groups is None else groups
        if groups < 1:
            raise PianoaccError(f"decoding groups {groups}: expected at least 1")
        self.model = model
        self.sampling = sampling
        self.decoders = [
            CachedDecoder(model, replace(sampling, seed=group_seed(sampling.seed, g)))
            for g in range(groups)
        ]
        self._pool = ThreadPoolExecutor(groups) if groups > 1 else None
        self.timings: list[DecodeTiming] = []

    def decode(
        self,
        melody: np.ndarray,
        primers: Sequence[Sequence[int]],
        limits: Sequence[int],
        max_length: int | None = None,
        harmony_tables: np.ndarray | None = None,
        bar_tables: np.ndarray | None = None,
    ) -> list[list[int]]:
        """As :meth:`CachedDecoder.decode`: each group decodes a contiguous slice of the
        rows; the results come back in the rows' order."""
        rows = len(primers)
        size = -(-rows // len(self.decoders)) if rows else 0
        slices = [slice(start, min(start + size, rows)) for start in range(0, rows, size or 1)]

        def run(group: int) -> list[list[int]]:
            part = slices[group]
            return self.decoders[group].decode(
                melody[part], primers[part], limits[part], max_length,
                None if harmony_tables is None else harmony_tables[part],
                None if bar_tables is None else bar_tables[part],
            )

        began = time.perf_counter()
        counts = [len(d.timings) for d in self.decoders]
        if self._pool is None or len(slices) == 1:
            results = [run(g) for g in range(len(slices))]
        else:
            results = list(self._pool.map(run, range(len(slices))))
        compiled = any(
            t.compiled for d, n in zip(self.decoders, counts) for t in d.timings[n:]
        )
        self.timings.append(DecodeTiming(time.perf_counter() - began, compiled))
        return [tokens for part in results for tokens in part]
