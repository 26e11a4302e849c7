"""gpt2_jax/data/sources.py: source specs, document boundaries, and every corpus error."""
import json
import pathlib

import pytest

from gpt2_jax.data import sources
from gpt2_jax.data.sources import DataConfig, resolve_source
from gpt2_jax.errors import DataError


def docs_of(path, **cfg):
    cfg = DataConfig(source=str(path), **cfg)
    return list(sources.iter_documents(resolve_source(cfg), cfg))


def test_tinyshakespeare_is_the_default_source():
    src = resolve_source(DataConfig())
    assert src.kind == "files"
    assert src.files[0].name == "input.txt" and src.files[0].parent.name == "tinyshakespeare"
    assert src.files[0].read_text().startswith("First Citizen:")


def test_tinyshakespeare_missing_data_dir_names_the_path(tmp_path):
    with pytest.raises(DataError, match=r"tinyshakespeare/input\.txt.*GPT2_JAX_DATA_DIR"):
        resolve_source(DataConfig(), data_dir=tmp_path)


def test_text_file_document_boundaries(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("para one\nstill one\n\n  \npara two\n\nthree\n")
    assert docs_of(path) == ["para one\nstill one\n\n  \npara two\n\nthree\n"]
    assert docs_of(path, split_documents="blank_lines") == ["para one\nstill one", "para two", "three"]
    assert docs_of(path, split_documents="lines") == ["para one", "still one", "para two", "three"]


def test_jsonl_one_document_per_line_with_configurable_field(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"body": "first doc", "id": 1}, {"body": "second\ndoc"}, {"body": "   "}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert docs_of(path, text_field="body") == ["first doc", "second\ndoc"]


def test_glob_reads_files_in_sorted_order(tmp_path):
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "c.jsonl").write_text('{"text": "sea"}\n')
    assert docs_of(tmp_path / "*") == ["ay", "bee", "sea"]


@pytest.mark.parametrize("spec, name, split", [
    ("tfds:openwebtext", "openwebtext", "train"),
    ("tfds:c4/en:validation", "c4/en", "validation"),
    ("tfds:lm1b:train[:10%]", "lm1b", "train[:10%]"),
])
def test_tfds_spec_parsing_does_not_touch_tfds(spec, name, split):
    src = resolve_source(DataConfig(source=spec))
    assert (src.kind, src.tfds_name, src.tfds_split) == ("tfds", name, split)


def test_tokens_glob_lists_matching_shards(tmp_path):
    for name in ("s1.npy", "s0.npy"):
        (tmp_path / name).write_bytes(b"")
    src = resolve_source(DataConfig(source=f"tokens:{tmp_path}/*.npy"))
    assert src.kind == "tokens" and [f.name for f in src.files] == ["s0.npy", "s1.npy"]


# ------------------------------------------------------------------------------ errors
def test_missing_corpus_file(tmp_path):
    with pytest.raises(DataError, match=r"corpus file not found: .*nope\.txt"):
        docs_of(tmp_path / "nope.txt")


@pytest.mark.parametrize("content, what", [(b"", "0 bytes"), (b" \n\t\n  ", "only whitespace")])
def test_empty_text_corpus(tmp_path, content, what):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"empty\.txt: empty corpus \({what}"):
        docs_of(path)


def test_empty_jsonl_corpus(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text('{"text": ""}\n\n{"text": " "}\n')
    with pytest.raises(DataError, match=r"empty\.jsonl: empty corpus"):
        docs_of(path)


def test_non_utf8_text_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok line\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin1\.txt:2: not UTF-8 \(byte 0xe9 at byte offset 11\).*iconv"):
        docs_of(path)


def test_non_utf8_jsonl_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not UTF-8 \(byte 0xe9 at byte offset 30\)"):
        docs_of(path)


def test_malformed_jsonl_line_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: malformed JSON"):
        docs_of(path)


def test_jsonl_missing_field_lists_keys(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"text": "a"}\n{"content": "b"}\n')
    with pytest.raises(DataError, match=r"f\.jsonl:2: no field 'text' \(found \['content'\]\).*text_field"):
        docs_of(path)


def test_jsonl_non_string_field(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"text": 3}\n')
    with pytest.raises(DataError, match=r"f\.jsonl:1: field 'text' is a int, expected a string"):
        docs_of(path)


@pytest.mark.parametrize("spec, pattern", [
    ("hf:openwebtext", r"unknown source scheme 'hf'"),
    ("openwebtext", r"unknown source 'openwebtext'.*tfds:NAME"),
    ("tfds:", r"names no dataset"),
    ("tokens:/no/such/dir/*.npy", r"no \.npy token shards match"),
    ("/no/such/dir/*.txt", r"matches no files"),
])
def test_unknown_or_unmatched_source_specs(spec, pattern):
    with pytest.raises(DataError, match=pattern):
        resolve_source(DataConfig(source=spec))


def test_directory_source_asks_for_a_glob(tmp_path):
    with pytest.raises(DataError, match=r"is a directory.*\*\.txt"):
        resolve_source(DataConfig(source=str(tmp_path)))


@pytest.mark.parametrize("field, value", [("split_documents", "pages"), ("val_fraction", 1.0),
                                          ("val_fraction", -0.1), ("source", ""), ("text_field", "")])
def test_config_validation(field, value):
    with pytest.raises(DataError, match=field if field != "source" else "source is empty"):
        DataConfig(**{field: value})


def test_file_digest_changes_with_content(tmp_path):
    path = pathlib.Path(tmp_path / "x.txt")
    path.write_text("a")
    first = sources.file_digest(path)
    path.write_text("b")
    assert sources.file_digest(path) != first
