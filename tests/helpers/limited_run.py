"""Run one hostile case under an address-space limit, then write the process's peak address space.

    python limited_run.py LIMIT_BYTES PEAK_FILE cli ARGS...      xpnet ARGS... (exit code: the command's)
    python limited_run.py LIMIT_BYTES PEAK_FILE call MODULE:FUNC ARGS...   FUNC(*ARGS); exit 2 on an XpnetError
                                                                (MODULE __main__: the functions below)

LIMIT_BYTES 0 runs without a limit: how a test measures what a normal run needs. The limit is set before
numpy is imported, so everything the process maps counts against it.
"""
from __future__ import annotations

import importlib
import resource
import sys
from pathlib import Path


def _peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmPeak:"):
            return int(line.split()[1]) * 1024
    return 0


def _run(kind: str, args: list[str]) -> int:
    if kind == "cli":
        from xpnet.cli import main

        return main(args)
    from xpnet.errors import XpnetError

    module, func = args[0].split(":")
    try:
        getattr(importlib.import_module(module), func)(*args[1:])
    except XpnetError as exc:
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return 2
    return 0


def load_mnist_offline(data_dir: str) -> None:
    """What `xpnet train mnist` reads, never downloading."""
    from xpnet.data.mnist import load_mnist

    load_mnist(data_dir, download=False)


def unpickle(path: str) -> None:
    """The restricted unpickler over a file's bytes (gunzipped as a stream when the name ends in .gz)."""
    import gzip

    from xpnet.data.unpickle import restricted_loads

    if path.endswith(".gz"):
        with gzip.open(path, "rb") as stream:
            restricted_loads(stream)
    else:
        restricted_loads(Path(path).read_bytes())


def main() -> int:
    limit, peak_file, kind, *args = sys.argv[1:]
    if int(limit):
        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
    try:
        return _run(kind, args)
    finally:
        Path(peak_file).write_text(str(_peak()))


if __name__ == "__main__":
    sys.exit(main())
