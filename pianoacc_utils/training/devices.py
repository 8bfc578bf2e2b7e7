"""Which devices training uses: the distribution strategy and the compute precision.

:func:`pick_strategy` spreads each batch over every visible GPU, or over the logical
CPUs when several are configured and there is no GPU (data parallelism: TensorFlow's
``MirroredStrategy`` or ``keras.distribution.DataParallel`` on JAX; the gradients are
averaged before each update), and uses the default strategy on a single device.
:func:`precision_policy` sets the compute precision. On a GPU, a profile's
``mixed_precision`` means float16 compute with float32 weights and logits (tensor cores).
On CPU cores the precision is measured, not assumed: :mod:`~pianoacc_utils.training.precision`
times the run's own steps in float32 and mixed bfloat16 where the processor has bfloat16
units (:func:`has_bfloat16_units`) and passes its choice in; without one,
:func:`cpu_precision` gives float32 or what :data:`CPU_PRECISION_VARIABLE` fixes.
A policy named explicitly (``mixed_bfloat16``) applies on any device, so that the
mixed-precision code path also runs on a CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras

from pianoacc_utils.common import PianoaccError, processor_flags

# --------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class StrategyInfo:
    """How training uses the visible devices.

    ``name`` is ``"default"`` (one device), ``"mirrored"`` (TensorFlow
    ``MirroredStrategy``) or ``"data_parallel"`` (``keras.distribution.DataParallel``
    on JAX); ``devices`` names the replicas. Build, compile and fit inside
    :meth:`scope`.
    """

    name: str
    devices: tuple[str, ...]
    backend: str
    strategy: Any = field(default=None, compare=False, repr=False)

    @property
    def replicas(self) -> int:
        return len(self.devices) if self.name != "default" else 1

    def scope(self) -> contextlib.AbstractContextManager:
        if self.strategy is None:
            return contextlib.nullcontext()
        return self.strategy.scope()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "devices": list(self.devices), "backend": self.backend}


_STRATEGIES: dict[tuple[str, tuple[str, ...]], StrategyInfo] = {}
"""The strategy made for each backend and device set, reused by later calls: two
``MirroredStrategy`` objects in one process number their collective operations alike
and clash (a second ``train`` in a notebook, or a resume after a crash, would fail)."""


def pick_strategy() -> StrategyInfo:
    """Data parallelism over every visible accelerator (or logical CPU when there
    is no accelerator) when there is more than one; otherwise the default. The same
    devices get the same strategy object on every call."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        names = tuple(d.name for d in devices)
        if len(names) > 1 and (backend, names) not in _STRATEGIES:
            mirrored = tf.distribute.MirroredStrategy(list(names))
            _STRATEGIES[backend, names] = StrategyInfo("mirrored", names, backend, mirrored)
    elif backend == "jax":
        names = tuple(keras.distribution.list_devices())
        if len(names) > 1 and (backend, names) not in _STRATEGIES:
            distribution = keras.distribution.DataParallel(devices=list(names))
            _STRATEGIES[backend, names] = StrategyInfo("data_parallel", names, backend, distribution)
    else:
        names = ()
    if len(names) > 1:
        return _STRATEGIES[backend, names]
    return StrategyInfo("default", names, backend)


def has_gpu() -> bool:
    """Whether the running backend sees a GPU."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    try:
        return bool(keras.distribution.list_devices("gpu"))
    except Exception:  # noqa: BLE001  (no GPU platform at all)
        return False


CPU_PRECISION_VARIABLE = "PIANOACC_CPU_PRECISION"
"""Environment variable that fixes the CPU training precision (``float32`` or
``mixed_bfloat16``) instead of the measured choice (no timing then)."""

CPU_PRECISIONS = ("float32", "mixed_bfloat16")

BFLOAT16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""Processor flags (``/proc/cpuinfo``) of bfloat16 arithmetic in hardware: AVX-512 BF16
dot products, AMX bfloat16 tiles. Without either, bfloat16 is emulated in float32."""


def forced_cpu_precision() -> str | None:
    """The precision :data:`CPU_PRECISION_VARIABLE` fixes, or ``None`` when it is unset."""
    forced = os.environ.get(CPU_PRECISION_VARIABLE)
    if not forced:
        return None
    if forced not in CPU_PRECISIONS:
        raise PianoaccError(
            f"{CPU_PRECISION_VARIABLE}={forced!r}: expected one of {', '.join(CPU_PRECISIONS)}"
        )
    return forced


def has_bfloat16_units(flags: frozenset[str] | None = None) -> bool:
    """Whether the processor computes bfloat16 in hardware (:data:`BFLOAT16_FLAGS`).
    ``flags``: default this processor's (:func:`~pianoacc_utils.common.processor_flags`)."""
    flags = processor_flags() if flags is None else flags
    return bool(flags & BFLOAT16_FLAGS)


def cpu_precision() -> str:
    """The CPU compute precision where none was measured: what
    :data:`CPU_PRECISION_VARIABLE` fixes, else ``float32``.

    Training measures instead (:func:`~pianoacc_utils.training.precision.choose_cpu_precision`):
    on a processor with AMX, mixed bfloat16 was 0.71x float32's speed on the ``small``
    profile's model and 2.56x on the ``cpu`` profile's (``docs/training.md``, "Speed"),
    so no rule on the processor's flags alone picks right.
    """
    return forced_cpu_precision() or "float32"


def training_precision(mixed: bool, policy: str | None = None, cpu: str | None = None) -> str:
    """The policy :func:`precision_policy` sets: ``policy`` when given with ``mixed`` (on
    any device); on a GPU ``mixed_float16`` with ``mixed``, else the current policy; on
    CPU cores ``cpu`` (a measured choice) or else :func:`cpu_precision`."""
    if mixed and policy is not None:
        return policy
    if has_gpu():
        return "mixed_float16" if mixed else keras.mixed_precision.global_policy().name
    return cpu or cpu_precision()


@contextlib.contextmanager
def precision_policy(
    mixed: bool, policy: str | None = None, cpu: str | None = None
) -> Iterator[str]:
    """Inside the block, the policy of :func:`training_precision`. Restores the previous
    global policy afterwards. Yields the policy name."""
    previous = keras.mixed_precision.global_policy().name
    name = training_precision(mixed, policy, cpu)
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)
