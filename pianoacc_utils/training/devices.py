"""Which devices training uses: the distribution strategy and the compute precision.

:func:`pick_strategy` spreads each batch over every visible GPU, or over the logical
CPUs when several are configured and there is no GPU (data parallelism: TensorFlow's
``MirroredStrategy`` or ``keras.distribution.DataParallel`` on JAX; the gradients are
averaged before each update), and uses the default strategy on a single device.
:func:`precision_policy` switches to mixed precision (float16 compute, float32 weights and
logits) only when a GPU is present: float16 speeds up GPU tensor cores, not CPUs. A policy
named explicitly (``mixed_bfloat16``) applies on any device, so that the mixed-precision
code path also runs, slowly, on a CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras

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


@contextlib.contextmanager
def precision_policy(mixed: bool, policy: str | None = None) -> Iterator[str]:
    """Inside the block, with ``mixed``: ``policy`` when given (on any device), else
    ``mixed_float16`` when a GPU is visible; without ``mixed`` the current policy.
    Restores the previous global policy afterwards. Yields the policy name."""
    previous = keras.mixed_precision.global_policy().name
    name = previous
    if mixed and policy is not None:
        name = policy
    elif mixed and _has_gpu():
        name = "mixed_float16"
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)
