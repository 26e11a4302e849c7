"""Tokenize once: documents -> `<|endoftext|>`-terminated token stream, written as .npy shards
(the cache, and the "tokens:GLOB" source format), read back memory-mapped."""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import pathlib
import re
import shutil
import time
import uuid
from typing import Iterable, Iterator, Sequence

import numpy as np

from gpt2_jax.data import sources
from gpt2_jax.data.sources import DataConfig, Source
from gpt2_jax.errors import DataError, TokenizerError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CACHE_VERSION = 1          # bump when the on-disk layout or packing rule changes
DEFAULT_SHARD_TOKENS = 1 << 24


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (GPT-2's 50257 does): half the disk and page cache of int32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def iter_token_chunks(documents: Iterable[str], tokenizer, docs_per_batch: int = 256
                      ) -> Iterator[np.ndarray]:
    """Token ids of documents in order, each followed by tokenizer.eot_id, in int64 chunks."""
    eot, vocab = int(tokenizer.eot_id), int(tokenizer.vocab_size)
    docs = iter(documents)
    while batch := list(itertools.islice(docs, docs_per_batch)):
        encoded = tokenizer.encode_batch(batch)
        total = sum(len(ids) + 1 for ids in encoded)
        chunk = np.fromiter(itertools.chain.from_iterable(itertools.chain(ids, (eot,)) for ids in encoded),
                            dtype=np.int64, count=total)
        if chunk.size and (chunk.min() < 0 or chunk.max() >= vocab):
            raise TokenizerError(f"tokenizer {tokenizer.name!r} produced ids outside [0, {vocab}) "
                                 f"(min {chunk.min()}, max {chunk.max()}); its vocab_size is wrong.")
        yield chunk


def tokenize_to_shards(documents: Iterable[str], tokenizer, out_dir: str | os.PathLike, *,
                       shard_tokens: int = DEFAULT_SHARD_TOKENS, docs_per_batch: int = 256,
                       source: str = "") -> list[pathlib.Path]:
    """Write documents' tokens (eot after each) to out_dir/shard_NNNNN.npy + manifest.json.

    Written to a temporary sibling and renamed at the end, so a crash never leaves a half cache
    and several processes racing on a shared disk agree on one result."""
    out_dir = pathlib.Path(out_dir)
    if (out_dir / MANIFEST).is_file():
        raise DataError(f"{out_dir} already holds token shards; delete it or choose another out_dir.")
    if shard_tokens <= 0:
        raise DataError(f"shard_tokens={shard_tokens} must be positive.")
    dtype = token_dtype(tokenizer.vocab_size)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    names, counts, buf, fill, total = [], [], np.empty(shard_tokens, dtype), 0, 0
    start = time.perf_counter()

    def flush():
        nonlocal fill
        if fill:
            names.append(f"shard_{len(names):05d}.npy")
            counts.append(fill)
            np.save(tmp / names[-1], buf[:fill])
            fill = 0
    try:
        for chunk in iter_token_chunks(documents, tokenizer, docs_per_batch):
            total += chunk.size
            while chunk.size:
                take = min(chunk.size, shard_tokens - fill)
                buf[fill:fill + take] = chunk[:take]
                fill, chunk = fill + take, chunk[take:]
                if fill == shard_tokens:
                    flush()
        flush()
        manifest = {"version": CACHE_VERSION, "source": source, "tokenizer": tokenizer.name,
                    "vocab_size": int(tokenizer.vocab_size), "eot_id": int(tokenizer.eot_id),
                    "dtype": dtype.name, "num_tokens": total, "shards": names, "shard_sizes": counts}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not (out_dir / MANIFEST).is_file():
                raise
            log.info("another process wrote %s first; using its shards", out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    secs = time.perf_counter() - start
    log.info("tokenized %s: %d tokens in %d shards, %.1fs (%.0f tok/s)", source or out_dir, total,
             len(names), secs, total / max(secs, 1e-9))
    return [out_dir / n for n in json.loads((out_dir / MANIFEST).read_text())["shards"]]


def read_shards(files: Sequence[str | os.PathLike], tokenizer=None) -> list[np.ndarray]:
    """Memory-map 1-D integer .npy token shards; checks a sibling manifest's tokenizer if present."""
    arrays = []
    for f in map(pathlib.Path, files):
        manifest = f.parent / MANIFEST
        if tokenizer is not None and manifest.is_file():
            made_by = json.loads(manifest.read_text()).get("tokenizer")
            if made_by != tokenizer.name:
                raise DataError(f"{f}: shards were tokenized with {made_by!r}, but training uses "
                                f"{tokenizer.name!r}; re-tokenize or pick the matching tokenizer.")
        try:
            arr = np.load(f, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise DataError(f"{f}: not a readable .npy token shard ({e}); write shards with "
                            "tokenize_to_shards.") from None
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"{f}: expected a 1-D integer token array, got {arr.dtype}{list(arr.shape)}.")
        if tokenizer is not None and arr.size:
            head = np.asarray(arr[: 1 << 20])
            if head.max() >= tokenizer.vocab_size:
                raise DataError(f"{f}: token id {int(head.max())} >= vocab_size "
                                f"{tokenizer.vocab_size} of tokenizer {tokenizer.name!r}; these "
                                "shards come from another tokenizer.")
        if arr.size:
            arrays.append(arr)
    return arrays


def _cache_key(source: Source, cfg: DataConfig, tokenizer) -> str:
    """Content of the corpus + how it is cut + tokenizer name: any change means a new cache entry."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{tokenizer.name}|{tokenizer.vocab_size}|"
                               f"{tokenizer.eot_id}".encode())
    if source.kind == "files":
        for f in source.files:
            cut = cfg.text_field if f.suffix == ".jsonl" else cfg.split_documents
            h.update(f"|{f.name}|{cut}|{sources.file_digest(f)}".encode())
    else:  # tfds: the dataset's full name carries its version
        h.update(f"|{source.tfds_name}|{source.tfds_split}|{cfg.text_field}".encode())
    return h.hexdigest()[:16]


def load_token_shards(cfg: DataConfig, tokenizer, *, data_dir=None, workdir=None) -> list[np.ndarray]:
    """The corpus as a list of 1-D token arrays (memory-mapped when cached), eot after each doc.

    Cached under cfg.cache_dir, else <workdir>/token_cache; with neither, tokenized in memory."""
    source = sources.resolve_source(cfg, data_dir)
    if source.kind == "tokens":
        arrays = read_shards(source.files, tokenizer)
        if not arrays:
            raise DataError(f"source {cfg.source!r}: all token shards are empty.")
        return arrays
    builder = None
    if source.kind == "tfds":  # resolve now so the cache key carries the dataset version
        builder = sources.tfds_builder(source, cfg)
        source = Source("tfds", source.spec, tfds_name=builder.info.full_name,
                        tfds_split=source.tfds_split)
    documents = (sources.iter_tfds_documents(source, cfg, builder) if builder is not None
                 else sources.iter_documents(source, cfg))
    cache_root = cfg.cache_dir or (pathlib.Path(workdir) / "token_cache" if workdir else None)
    if cache_root is None:
        chunks = list(iter_token_chunks(documents, tokenizer))
        if not chunks:
            raise DataError(f"source {cfg.source!r}: no documents; give a corpus with text in it.")
        return [np.concatenate(chunks).astype(token_dtype(tokenizer.vocab_size))]
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{_label(source)}-{tokenizer.name}")[-80:]
    entry = pathlib.Path(cache_root).expanduser() / f"{label}-{_cache_key(source, cfg, tokenizer)}"
    if (entry / MANIFEST).is_file():
        log.info("token cache hit: %s", entry)
        files = [entry / n for n in json.loads((entry / MANIFEST).read_text())["shards"]]
    else:
        files = tokenize_to_shards(documents, tokenizer, entry, source=cfg.source)
    return read_shards(files)


def _label(source: Source) -> str:
    if source.kind == "tfds":
        return source.tfds_name.replace("/", "_")
    return source.files[0].stem if len(source.files) == 1 else f"{source.files[0].stem}+{len(source.files) - 1}"


def load_token_stream(cfg: DataConfig, tokenizer, data_dir=None, *, workdir=None) -> np.ndarray:
    """The whole corpus as one in-memory int32 stream (small corpora, tests, evals)."""
    return np.concatenate([np.asarray(a, np.int32) for a in
                           load_token_shards(cfg, tokenizer, data_dir=data_dir, workdir=workdir)])
