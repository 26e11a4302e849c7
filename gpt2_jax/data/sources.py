"""Where training text comes from: a source spec resolved to files or a tfds dataset, read as
documents (strings), with errors that name the file, line and fix."""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import pathlib
import re
from typing import Iterator

from gpt2_jax import paths
from gpt2_jax.errors import DataError
from gpt2_jax.extras import require
from gpt2_jax.textfiles import decode_utf8, iter_jsonl_field

TINYSHAKESPEARE = "train_corpora/tinyshakespeare/input.txt"
SPLIT_MODES = ("file", "blank_lines", "lines")
WINDOW_MODES = ("packed", "random")
SOURCE_HELP = ('"tinyshakespeare", a .txt/.jsonl path or glob, "tfds:NAME[/CONFIG][:SPLIT]" '
               '(e.g. tfds:openwebtext, tfds:c4/en:train) or "tokens:GLOB" (pre-tokenized .npy shards)')
_GLOB_CHARS = re.compile(r"[*?\[]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9_+-]+):")  # two+ letters, so C:\ paths are not schemes


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What to train on and how to cut it; frozen so it can sit inside a run's config."""

    source: str = "tinyshakespeare"     # see SOURCE_HELP
    tokenizer: str = "gpt2"             # Tokenizer.load spec: "gpt2", a sentencepiece *.model path, or "char"
    tokenizer_vocab_size: int = 0       # > 0: train a sentencepiece BPE of this size on the corpus (train.build)
    text_field: str = "text"            # jsonl key / tfds feature that holds a document's text
    split_documents: str = "file"       # plain text: one doc per file, per blank-line paragraph, or per line
    val_fraction: float = 0.05          # share of windows held out for validation (the last ones)
    windows: str = "packed"             # "packed" windows in shuffled epochs | nanoGPT's "random" offsets (windows.py)
    cache_dir: str | None = None        # token cache; None -> <workdir>/token_cache (no cache without workdir)
    data_dir: str | None = None         # data root for named corpora; None -> $GPT2_JAX_DATA_DIR
    tfds_data_dir: str | None = None    # where tfds datasets are prepared (None: tfds' default)
    tfds_download: bool = False         # let tfds download and prepare a missing dataset (needs network)
    dump_batches: int = 0               # > 0: the training loop writes its first K global batches (train.loop)

    def __post_init__(self):
        if not self.source:
            raise DataError(f"source is empty; expected {SOURCE_HELP}.")
        if self.windows not in WINDOW_MODES:
            raise DataError(f"windows={self.windows!r} is not one of {WINDOW_MODES}.")
        if self.tokenizer == "char" and self.tokenizer_vocab_size:
            raise DataError(f"tokenizer='char' takes its vocabulary from the corpus's characters, but "
                            f"tokenizer_vocab_size={self.tokenizer_vocab_size} asks for a sentencepiece BPE; "
                            "set tokenizer_vocab_size=0.")
        if self.split_documents not in SPLIT_MODES:
            raise DataError(f"split_documents={self.split_documents!r} is not one of {SPLIT_MODES}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise DataError(f"val_fraction={self.val_fraction} must be in [0, 1); 0 disables validation.")
        if self.dump_batches < 0:
            raise DataError(f"dump_batches={self.dump_batches} must be >= 0 (0 = off, K = write the first K "
                            "steps' batches to WORKDIR/batches/).")
        if not self.text_field:
            raise DataError("text_field is empty; name the jsonl/tfds field that holds the text, "
                            "e.g. 'text'.")


@dataclasses.dataclass(frozen=True)
class Source:
    """A resolved source: kind is 'files' (text/jsonl), 'tfds' or 'tokens'."""

    kind: str
    spec: str
    files: tuple[pathlib.Path, ...] = ()
    tfds_name: str = ""
    tfds_split: str = "train"


def resolve_source(cfg: DataConfig, data_dir: str | os.PathLike | None = None) -> Source:
    """Turn `cfg.source` into files or a tfds name; errors for unknown specs and missing files."""
    spec = cfg.source
    if spec == "tinyshakespeare":
        path = paths.data_file(TINYSHAKESPEARE, data_dir,
                               source="karpathy/char-rnn data/tinyshakespeare/input.txt")
        return Source("files", spec, files=(path,))
    scheme = _SCHEME.match(spec)
    if scheme and scheme.group(1) == "tfds":
        name, _, split = spec[len("tfds:"):].partition(":")
        if not name:
            raise DataError(f"source {spec!r} names no dataset; expected tfds:NAME[/CONFIG][:SPLIT], "
                            "e.g. tfds:openwebtext or tfds:c4/en:train.")
        return Source("tfds", spec, tfds_name=name, tfds_split=split or "train")
    if scheme and scheme.group(1) == "tokens":
        pattern = spec[len("tokens:"):]
        files = tuple(sorted(pathlib.Path(p) for p in glob.glob(os.path.expanduser(pattern))))
        if not files:
            raise DataError(f"source {spec!r}: no .npy token shards match {pattern!r}; point the glob "
                            "at files written by tokenize_to_shards, e.g. tokens:/data/owt/*.npy.")
        return Source("tokens", spec, files=files)
    if scheme:
        raise DataError(f"unknown source scheme {scheme.group(1)!r} in {spec!r}; expected {SOURCE_HELP}.")
    return Source("files", spec, files=_resolve_files(spec))


def _resolve_files(spec: str) -> tuple[pathlib.Path, ...]:
    expanded = os.path.expanduser(spec)
    if _GLOB_CHARS.search(expanded):
        files = tuple(sorted(pathlib.Path(p) for p in glob.glob(expanded) if os.path.isfile(p)))
        if not files:
            raise DataError(f"corpus glob {spec!r} matches no files; check the pattern.")
        return files
    path = pathlib.Path(expanded)
    if path.is_file():
        return (path,)
    if path.is_dir():
        raise DataError(f"corpus path {path} is a directory; pass a file or a glob such as "
                        f"{path}/*.txt.")
    if os.sep in spec or "/" in spec or path.suffix:
        raise DataError(f"corpus file not found: {path}; check the path (source={spec!r}).")
    raise DataError(f"unknown source {spec!r}: not a known corpus name nor an existing file; "
                    f"expected {SOURCE_HELP}.")


# ---------------------------------------------------------------------------------- files
def file_digest(path: pathlib.Path) -> str:
    """sha256 of a file's bytes: the cache key, so an edited corpus is re-tokenized."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_text_documents(path: pathlib.Path, split_documents: str = "file") -> list[str]:
    """A plain text file as documents: the whole file, its blank-line paragraphs, or its lines."""
    raw = path.read_bytes()
    text = decode_utf8(raw, path)
    if not text.strip():
        what = "0 bytes" if not raw else f"only whitespace ({len(raw)} bytes)"
        raise DataError(f"{path}: empty corpus ({what}); give a file with text in it.")
    if split_documents == "file":
        return [text]
    if split_documents == "blank_lines":
        docs = re.split(r"\n(?:[ \t\r\f\v]*\n)+", text)
    elif split_documents == "lines":
        docs = text.splitlines()
    else:
        raise DataError(f"split_documents={split_documents!r} is not one of {SPLIT_MODES}.")
    return [d.strip("\r\n") for d in docs if d.strip()]


def iter_jsonl_documents(path: pathlib.Path, text_field: str = "text") -> Iterator[str]:
    """One document per jsonl line, from field `text_field`; blank lines and blank texts are skipped."""
    count = 0
    for _, text in iter_jsonl_field(path, text_field,
                                    field_fix="set DataConfig.text_field to the key that holds the text"):
        if text.strip():
            count += 1
            yield text
    if not count:
        raise DataError(f"{path}: empty corpus (no non-blank {text_field!r} values); "
                        "give a jsonl file with text in it.")


def iter_file_documents(path: pathlib.Path, cfg: DataConfig) -> Iterator[str]:
    """Documents of one corpus file; .jsonl files are one document per line."""
    if not path.is_file():
        raise DataError(f"corpus file not found: {path}; check the path (source={cfg.source!r}).")
    if path.suffix == ".jsonl":
        yield from iter_jsonl_documents(path, cfg.text_field)
    else:
        yield from read_text_documents(path, cfg.split_documents)


# ---------------------------------------------------------------------------------- tfds
def tfds_builder(source: Source, cfg: DataConfig):
    """The tfds builder for a 'tfds:' source; DataError if unknown or not prepared (and no download)."""
    tfds = require("tensorflow_datasets", extra="tf", feature="tfds training sources")
    try:
        builder = tfds.builder(source.tfds_name, data_dir=cfg.tfds_data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"source {source.spec!r}: tfds has no dataset {source.tfds_name!r}; see the "
                        "TFDS catalog for names (e.g. openwebtext, c4/en, lm1b).") from None
    if not builder.is_prepared():
        if not cfg.tfds_download:
            raise DataError(f"source {source.spec!r}: tfds dataset {source.tfds_name!r} is not prepared "
                            f"in {builder.data_dir_root}; prepare it there first "
                            f"(`tfds build {source.tfds_name} --data_dir=...`), point "
                            "tfds_data_dir at it, or set tfds_download=True on a machine with network.")
        builder.download_and_prepare()
    return builder


def iter_tfds_documents(source: Source, cfg: DataConfig, builder=None) -> Iterator[str]:
    """Documents of a tfds split, in the dataset's stored order (no file shuffling)."""
    builder = builder or tfds_builder(source, cfg)
    features = builder.info.features
    if cfg.text_field not in features:
        raise DataError(f"source {source.spec!r}: no feature {cfg.text_field!r} (found "
                        f"{sorted(features)}); set DataConfig.text_field.")
    try:
        ds = builder.as_dataset(split=source.tfds_split, shuffle_files=False)
    except (KeyError, ValueError) as e:
        raise DataError(f"source {source.spec!r}: bad split {source.tfds_split!r} ({e}); known "
                        f"splits: {sorted(builder.info.splits)}.") from None
    for example in ds.as_numpy_iterator():
        value = example[cfg.text_field]
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        if text.strip():
            yield text


def iter_documents(source: Source, cfg: DataConfig) -> Iterator[str]:
    """All documents of a 'files' or 'tfds' source, in a fixed order."""
    if source.kind == "files":
        for path in source.files:
            yield from iter_file_documents(path, cfg)
    elif source.kind == "tfds":
        yield from iter_tfds_documents(source, cfg)
    else:
        raise DataError(f"source {source.spec!r} holds tokens, not text documents.")
