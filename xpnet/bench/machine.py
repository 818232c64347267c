"""The machine a benchmark ran on: Python, cores, CPU model."""
from __future__ import annotations

import os
import platform
from typing import Any

from xpnet.backends.threads import cores


def machine() -> dict[str, Any]:
    """The machine a result was measured on, for the JSON and the plot's caption."""
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(), "cores_usable": cores(),
            "processor": platform.processor() or platform.machine(), "cpu_model": _cpu_model()}


def _cpu_model() -> str | None:
    """The CPU's marketing name (Linux's /proc/cpuinfo), for the plot's caption; None where unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return " ".join(line.partition(":")[2].split()) or None
    except OSError:
        pass
    return None
