"""What the benchmarks record about the machine they ran on.

The processor's name and the instruction-set flags that decide how fast low-precision
arithmetic can be (``amx_bf16``, ``avx512_bf16``: native bfloat16 matrix units), the
cores, the load average (other processes on a shared machine slow every measurement),
and the versions of the libraries a run has already imported (nothing is imported here,
so that recording them cannot change what a run measures; that is also why the processor
is read here and not through ``pianoacc_utils.common.processor_name`` and
``processor_flags``, which read the same ``/proc/cpuinfo`` but load Keras with the package).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2", "fma")
"""Processor flags worth recording for mixed-precision speed."""


def processor() -> dict:
    """Name, the :data:`FLAGS` it has, and the cores this process may use."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux
        pass
    name = name or platform.processor() or "unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"name": name, "flags": {flag: flag in flags for flag in FLAGS}, "cores": cores}


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages (runnable processes)."""
    return [round(value, 2) for value in os.getloadavg()]


def versions() -> dict:
    """Python, the platform, and the versions of the libraries already imported."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("numpy", "keras", "keras_hub", "jax", "jaxlib", "tensorflow"):
        module = sys.modules.get(name)
        if module is not None:
            found[name] = getattr(module, "__version__", "?")
    return found
