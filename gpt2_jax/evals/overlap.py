"""Train/test 8-gram overlap with Bloom filters, GPT-2 paper §4 / Table 6.

Text is normalised as the paper describes: lower-cased alphanumeric words separated by single
spaces (every run of other characters is a word break). A Bloom filter holds every 8-gram of the
training corpus, sized for a false-positive rate of at most `fp_rate` (paper: 1e-8), and we report
the percentage of the test set's 8-grams (all occurrences; also unique ones) that it contains.
"""
from __future__ import annotations

import hashlib
import math
import os
import pathlib
import re
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from gpt2_jax.errors import DataError, InputError

_WORD = re.compile(r"[^\W_]+")  # unicode letters and digits


def normalize(text: str) -> list[str]:
    """Lower-cased alphanumeric words: 'Hello, World-2!' -> ['hello', 'world', '2']."""
    return _WORD.findall(text.lower())


def ngrams(words: Sequence[str], n: int = 8) -> Iterator[str]:
    for i in range(len(words) - n + 1):
        yield " ".join(words[i:i + n])


class BloomFilter:
    """A Bloom filter over strings: m bits, k hash functions by double hashing one BLAKE2b digest."""

    def __init__(self, capacity: int, fp_rate: float = 1e-8):
        if capacity < 1 or not 0 < fp_rate < 1:
            raise InputError(f"BloomFilter(capacity={capacity}, fp_rate={fp_rate}): need capacity >= 1 and "
                             "0 < fp_rate < 1.")
        self.m = max(8, math.ceil(-capacity * math.log(fp_rate) / math.log(2) ** 2))
        self.k = max(1, round(self.m / capacity * math.log(2)))
        self.bits = np.zeros((self.m + 7) // 8, np.uint8)

    def _indices(self, items: Sequence[str]) -> np.ndarray:
        digests = b"".join(hashlib.blake2b(s.encode("utf-8"), digest_size=16).digest() for s in items)
        h = np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
        i = np.arange(self.k, dtype=np.uint64)
        with np.errstate(over="ignore"):
            return (h[:, :1] + i[None, :] * h[:, 1:]) % np.uint64(self.m)

    def add(self, items: Sequence[str]) -> None:
        if len(items):
            idx = self._indices(items).ravel()
            np.bitwise_or.at(self.bits, (idx >> np.uint64(3)).astype(np.int64),
                             (np.uint8(1) << (idx & np.uint64(7)).astype(np.uint8)))

    def contains(self, items: Sequence[str]) -> np.ndarray:
        if not len(items):
            return np.zeros(0, bool)
        idx = self._indices(items)
        hit = self.bits[(idx >> np.uint64(3)).astype(np.int64)] >> (idx & np.uint64(7)).astype(np.uint8) & 1
        return hit.all(axis=1)

    def save(self, path: str | os.PathLike) -> None:
        np.savez_compressed(path, bits=self.bits, m=self.m, k=self.k)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BloomFilter":
        z = np.load(path)
        bf = cls.__new__(cls)
        bf.bits, bf.m, bf.k = z["bits"], int(z["m"]), int(z["k"])
        return bf


def _file_words(path: pathlib.Path, chunk_chars: int = 1 << 22) -> Iterator[list[str]]:
    """The normalised words of a file in chunks (a word cut by a chunk edge is re-joined)."""
    if not path.is_file():
        raise DataError(f"training corpus file not found: {path}.")
    with open(path, encoding="utf-8", errors="replace") as f:
        carry = ""
        while True:
            block = f.read(chunk_chars)
            if not block:
                break
            block = carry + block
            m = re.search(r"[\W_]+[^\W_]*$", block)  # keep a possibly unfinished last word
            carry, block = (block[m.start():], block[:m.start()]) if m else (block, "")
            yield normalize(block)
        yield normalize(carry)


def _stream_ngrams(paths: Iterable[pathlib.Path], n: int) -> Iterator[list[str]]:
    """Batches of the n-grams of each file (a file is one word stream; n-grams never span files)."""
    for p in paths:
        tail: list[str] = []
        for words in _file_words(p):
            words = tail + words
            yield list(ngrams(words, n))
            tail = words[-(n - 1):] if n > 1 else []


def build_filter(train_files: Sequence[str | os.PathLike], n: int = 8, fp_rate: float = 1e-8,
                 capacity: int | None = None) -> BloomFilter:
    """A Bloom filter of every n-gram of the training files (capacity: counted in a first pass)."""
    files = [pathlib.Path(f).expanduser() for f in train_files]
    if capacity is None:
        capacity = sum(len(batch) for batch in _stream_ngrams(files, n))
    bf = BloomFilter(max(1, capacity), fp_rate)
    for batch in _stream_ngrams(files, n):
        bf.add(batch)
    return bf


def overlap_percent(bloom: BloomFilter, text: str, n: int = 8) -> dict[str, float]:
    """Share of the text's n-grams found in the filter: all occurrences and unique ones."""
    grams = list(ngrams(normalize(text), n))
    if not grams:
        return {"percent": 0.0, "percent_unique": 0.0, "ngrams": 0}
    hits = bloom.contains(grams)
    uniq = sorted(set(grams))
    return {"percent": 100.0 * float(hits.mean()),
            "percent_unique": 100.0 * float(bloom.contains(uniq).mean()), "ngrams": len(grams)}


def overlap(train_files: Sequence[str | os.PathLike], test_texts: Mapping[str, str], n: int = 8,
            fp_rate: float = 1e-8, bloom: BloomFilter | None = None) -> dict[str, dict[str, float]]:
    """{test name: overlap_percent} of each test text against the training files' n-grams."""
    bloom = bloom or build_filter(train_files, n, fp_rate)
    return {name: overlap_percent(bloom, text, n) for name, text in test_texts.items()}


def eval_set_text(task: str, data_dir: str | os.PathLike | None = None,
                  path: str | os.PathLike | None = None) -> str:
    """The text of a task's evaluation set, for overlap analysis."""
    from gpt2_jax.evals import readers
    if task == "lambada":
        return "\n".join(readers.read_lambada(path, data_dir))
    if task.startswith("cbt"):
        qs = readers.read_cbt(path, task[-2:].upper(), "test", data_dir)
        return "\n".join(" ".join(q.context) + " " + q.query.replace("XXXXX", q.answer) for q in qs)
    if task == "coqa":
        return "\n".join(s.story + "\n" + "\n".join(s.questions) for s in readers.read_coqa(path, data_dir))
    if task == "wsc273":  # the sentences with the right candidate, not the jsonl's keys
        from gpt2_jax.evals.formats import read_wsc273
        return "\n".join(f"{s.options[s.gold]} {s.continuation}" for s in read_wsc273(path, data_dir))
    if task in ("enwik8", "text8"):
        return readers.read_char_benchmark(task, path, data_dir).decode("utf-8", errors="replace")
    return readers.read_text(task, path, data_dir)


def overlap_report(train_files: Sequence[str | os.PathLike], tasks: str | Sequence[str] | None = None,
                   data_dir: str | os.PathLike | None = None, output: str | os.PathLike | None = None,
                   n: int = 8, fp_rate: float = 1e-8,
                   files: Mapping[str, str | os.PathLike] | None = None) -> dict[str, dict[str, float]]:
    """Overlap of each task's test set with the training files (the function behind
    `gpt2-jax overlap`); with `output`, also writes the result as JSON."""
    import json

    from gpt2_jax.evals.runner import parse_tasks
    names = parse_tasks(tasks)
    files = dict(files or {})
    texts = {t: eval_set_text(t, data_dir, files.get(t)) for t in names}
    result = overlap(train_files, texts, n, fp_rate)
    if output is not None:
        pathlib.Path(output).expanduser().write_text(json.dumps(result, indent=2) + "\n")
    return result
