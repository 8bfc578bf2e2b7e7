"""Which devices training uses: the distribution strategy and the compute precision.

:func:`pick_strategy` spreads each batch over every visible GPU, or over the logical
CPUs when several are configured and there is no GPU (data parallelism: TensorFlow's
``MirroredStrategy`` or ``keras.distribution.DataParallel`` on JAX; the gradients are
averaged before each update), and uses the default strategy on a single device.
:func:`precision_policy` sets the compute precision. On a GPU, a profile's
``mixed_precision`` means float16 compute with float32 weights and logits (tensor cores).
On CPU cores the processor decides (:func:`cpu_precision`): bfloat16 compute only where
the processor multiplies bfloat16 in hardware and the backend uses it; elsewhere bfloat16
is emulated and slower than float32 (``benchmarks/training_throughput.py`` measures both).
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


def _has_gpu() -> bool:
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    try:
        return bool(keras.distribution.list_devices("gpu"))
    except Exception:  # noqa: BLE001  (no GPU platform at all)
        return False


CPU_PRECISION_VARIABLE = "PIANOACC_CPU_PRECISION"
"""Environment variable that fixes the CPU training precision (``float32`` or
``mixed_bfloat16``) instead of :func:`cpu_precision`'s choice."""

CPU_PRECISIONS = ("float32", "mixed_bfloat16")


def cpu_precision(backend: str | None = None, flags: frozenset[str] | None = None) -> str:
    """The compute precision for training on CPU cores, chosen by the processor.

    ``mixed_bfloat16`` (bfloat16 compute, float32 weights and logits) when the processor
    has bfloat16 matrix units (Intel AMX, flag ``amx_bf16``) and the backend is
    TensorFlow, whose oneDNN kernels use them; JAX's CPU backend does not gain from them.
    Otherwise ``float32``: without those units bfloat16 is emulated and slower, and in a
    short run it did not change the validation loss (``docs/training.md``, "Speed"), so the
    choice is one of speed only. ``backend``: default the running Keras backend;
    ``flags``: default this processor's (:func:`~pianoacc_utils.common.processor_flags`).
    :data:`CPU_PRECISION_VARIABLE` overrides the choice.
    """
    forced = os.environ.get(CPU_PRECISION_VARIABLE)
    if forced:
        if forced not in CPU_PRECISIONS:
            raise PianoaccError(
                f"{CPU_PRECISION_VARIABLE}={forced!r}: expected one of {', '.join(CPU_PRECISIONS)}"
            )
        return forced
    backend = backend or keras.backend.backend()
    flags = processor_flags() if flags is None else flags
    return "mixed_bfloat16" if backend == "tensorflow" and "amx_bf16" in flags else "float32"


def training_precision(mixed: bool, policy: str | None = None) -> str:
    """The policy :func:`precision_policy` sets: ``policy`` when given with ``mixed`` (on
    any device); on a GPU ``mixed_float16`` with ``mixed``, else the current policy; on
    CPU cores :func:`cpu_precision`."""
    if mixed and policy is not None:
        return policy
    if _has_gpu():
        return "mixed_float16" if mixed else keras.mixed_precision.global_policy().name
    return cpu_precision()


@contextlib.contextmanager
def precision_policy(mixed: bool, policy: str | None = None) -> Iterator[str]:
    """Inside the block, the policy of :func:`training_precision`. Restores the previous
    global policy afterwards. Yields the policy name."""
    previous = keras.mixed_precision.global_policy().name
    name = training_precision(mixed, policy)
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)
