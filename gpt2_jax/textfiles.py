"""Reading UTF-8 text and `{"text": ...}` jsonl files with errors that name the file, the line
and the fix. Shared by the training sources (`gpt2_jax.data.sources`) and the evaluation readers
(`gpt2_jax.evals.readers`), which differ only in the fix they suggest."""
from __future__ import annotations

import json
import pathlib
from typing import Iterator

from gpt2_jax.errors import DataError

REENCODE = "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8 {name}"


def decode_utf8(raw: bytes, path: pathlib.Path, fix: str = REENCODE, *, base_offset: int = 0,
                line: int | None = None) -> str:
    """`raw` as UTF-8; a bad byte raises DataError with path:line, the byte, its offset and `fix`
    (`{name}` in it becomes the file's name). `base_offset`/`line`: where `raw` sits in the file."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = line if line is not None else raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} at byte offset "
                        f"{base_offset + e.start}); {fix.format(name=path.name)}.") from None


def iter_jsonl_field(path: pathlib.Path, field: str = "text", *, utf8_fix: str = REENCODE,
                     field_fix: str = "") -> Iterator[tuple[int, str]]:
    """(line number, record[field]) for every non-blank line of a jsonl file, read line by line.
    Each line must be a JSON object whose `field` is a string (it may be blank: callers decide);
    otherwise DataError names path:line, what was found, and `field_fix` when given."""
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = decode_utf8(raw, path, utf8_fix, base_offset=offset, line=lineno)
            offset += len(raw)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno}); each "
                                f"line must be one JSON object like {{\"{field}\": \"...\"}}.") from None
            if not isinstance(record, dict) or field not in record:
                found = sorted(record) if isinstance(record, dict) else f"a {type(record).__name__}"
                raise DataError(f"{path}:{lineno}: no field {field!r} (found {found})"
                                + (f"; {field_fix}." if field_fix else "."))
            value = record[field]
            if not isinstance(value, str):
                raise DataError(f"{path}:{lineno}: field {field!r} is a {type(value).__name__}, "
                                "expected a string.")
            yield lineno, value
