"""Fetch the official evaluation files into the data dir, under their official names (needs a
network; never called by tests or by the evals themselves, which only read local files)."""
from __future__ import annotations

import io
import pathlib
import tarfile
import urllib.request
import zipfile

from gpt2_jax import paths
from gpt2_jax.errors import DataError
from gpt2_jax.evals.readers import SOURCES, PathLike


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=600) as r:
            return r.read()
    except OSError as e:
        raise DataError(f"could not download {url}: {e}. Download it by hand and place it under the data "
                        "dir as the error of the reader names.") from None


def _extract(blob: bytes, url: str, member: str) -> bytes:
    if url.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            return z.read(member)
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        f = t.extractfile(member)
        if f is None:
            raise DataError(f"{url} has no file {member}.")
        return f.read()


def download(datasets: list[str] | None = None, data_dir: PathLike | None = None,
             overwrite: bool = False) -> list[pathlib.Path]:
    """Download the test files of `datasets` (default: all) to their official paths; returns them.
    An archive shared by several files (CBTest.tgz) is fetched once."""
    root = paths.data_dir(data_dir)
    blobs: dict[str, bytes] = {}
    written = []
    for (name, _split), src in SOURCES.items():
        if datasets is not None and name not in datasets:
            continue
        dest = root / src.relpath
        if dest.exists() and not overwrite:
            written.append(dest)
            continue
        if src.url not in blobs:
            blobs[src.url] = _fetch(src.url)
        data = _extract(blobs[src.url], src.url, src.member) if src.member else blobs[src.url]
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(dest)
        written.append(dest)
    return written
