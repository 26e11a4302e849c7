"""gpt2_jax/data/shards.py: eot packing of documents, the token cache, and .npy token shards."""
import json

import numpy as np
import pytest

from gpt2_jax.data import shards
from gpt2_jax.data.sources import DataConfig
from gpt2_jax.errors import DataError


class ByteTokenizer:
    """Stand-in with the Tokenizer interface: UTF-8 bytes are ids, 256 is <|endoftext|>."""

    vocab_size, eot_id = 257, 256

    def __init__(self, name="bytes"):
        self.name, self.calls = name, 0

    def encode(self, text):
        self.calls += 1
        return list(text.encode("utf-8"))

    def encode_batch(self, texts):
        self.calls += 1
        return [list(t.encode("utf-8")) for t in texts]


def expected_stream(docs, eot=256):
    out = []
    for d in docs:
        out += list(d.encode("utf-8")) + [eot]
    return np.array(out, np.int32)


def test_stream_is_documents_each_followed_by_eot(tmp_path):
    path = tmp_path / "c.jsonl"
    docs = ["alpha", "béta", "gamma delta"]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    stream = shards.load_token_stream(DataConfig(source=str(path)), ByteTokenizer())
    assert stream.dtype == np.int32 and stream.ndim == 1
    np.testing.assert_array_equal(stream, expected_stream(docs))
    assert (stream == 256).sum() == len(docs)  # one separator per document, between and after


def test_blank_line_documents_across_files(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    (tmp_path / "b.txt").write_text("three")
    cfg = DataConfig(source=str(tmp_path / "*.txt"), split_documents="blank_lines")
    np.testing.assert_array_equal(shards.load_token_stream(cfg, ByteTokenizer()),
                                  expected_stream(["one", "two", "three"]))


def test_cache_skips_tokenization_on_second_call(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n" * 50)
    cfg = DataConfig(source=str(corpus))
    tok = ByteTokenizer()
    first = shards.load_token_stream(cfg, tok, workdir=tmp_path / "wd")
    calls = tok.calls
    assert calls >= 1 and list((tmp_path / "wd" / "token_cache").glob("c-bytes-*/shard_00000.npy"))
    second = shards.load_token_stream(cfg, tok, workdir=tmp_path / "wd")
    assert tok.calls == calls
    np.testing.assert_array_equal(first, second)


def test_cache_key_follows_content_and_tokenizer(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("version one")
    cfg = DataConfig(source=str(corpus), cache_dir=str(tmp_path / "cache"))
    tok = ByteTokenizer()
    shards.load_token_stream(cfg, tok)
    corpus.write_text("version two!")
    calls = tok.calls
    np.testing.assert_array_equal(shards.load_token_stream(cfg, tok), expected_stream(["version two!"]))
    assert tok.calls > calls  # edited corpus: re-tokenized
    other = ByteTokenizer(name="bytes-v2")
    shards.load_token_stream(cfg, other)
    assert other.calls >= 1  # another tokenizer never reuses this one's cache
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_no_cache_dir_tokenizes_in_memory(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc")
    before = set(tmp_path.rglob("*"))
    out = shards.load_token_shards(DataConfig(source=str(corpus)), ByteTokenizer())
    assert set(tmp_path.rglob("*")) == before
    np.testing.assert_array_equal(np.concatenate(out), expected_stream(["abc"]))


def test_tokenize_to_shards_splits_and_round_trips(tmp_path):
    docs = [f"document number {i}" for i in range(40)]
    files = shards.tokenize_to_shards(docs, ByteTokenizer(), tmp_path / "out", shard_tokens=100,
                                      docs_per_batch=7)
    arrays = [np.load(f) for f in files]
    assert all(a.dtype == np.uint16 for a in arrays)
    assert [a.size for a in arrays[:-1]] == [100] * (len(arrays) - 1) and 0 < arrays[-1].size <= 100
    np.testing.assert_array_equal(np.concatenate(arrays), expected_stream(docs))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["num_tokens"] == sum(a.size for a in arrays) and manifest["tokenizer"] == "bytes"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp dir renamed away
    with pytest.raises(DataError, match="already holds token shards"):
        shards.tokenize_to_shards(docs, ByteTokenizer(), tmp_path / "out")


def test_tokens_source_reads_shards_memory_mapped(tmp_path):
    docs = ["xyz" * 30, "uvw" * 30]
    shards.tokenize_to_shards(docs, ByteTokenizer(), tmp_path / "toks", shard_tokens=64)
    cfg = DataConfig(source=f"tokens:{tmp_path}/toks/*.npy")
    tok = ByteTokenizer()
    arrays = shards.load_token_shards(cfg, tok)
    assert tok.calls == 0 and all(isinstance(a, np.memmap) for a in arrays)
    np.testing.assert_array_equal(shards.load_token_stream(cfg, tok), expected_stream(docs))


def test_tokens_source_rejects_other_tokenizer_and_bad_arrays(tmp_path):
    shards.tokenize_to_shards(["abc"], ByteTokenizer(), tmp_path / "toks")
    with pytest.raises(DataError, match=r"tokenized with 'bytes', but training uses 'gpt2'"):
        shards.load_token_shards(DataConfig(source=f"tokens:{tmp_path}/toks/*.npy"),
                                 ByteTokenizer(name="gpt2"))
    np.save(tmp_path / "two_d.npy", np.zeros((2, 3), np.int32))
    with pytest.raises(DataError, match=r"two_d\.npy: expected a 1-D integer token array"):
        shards.load_token_shards(DataConfig(source=f"tokens:{tmp_path}/two_d.npy"), ByteTokenizer())
    np.save(tmp_path / "big.npy", np.array([5, 300], np.int32))
    with pytest.raises(DataError, match=r"big\.npy: token id 300 >= vocab_size 257"):
        shards.load_token_shards(DataConfig(source=f"tokens:{tmp_path}/big.npy"), ByteTokenizer())


def test_tokenizer_ids_out_of_range_are_caught(tmp_path):
    class Broken(ByteTokenizer):
        vocab_size = 100  # bytes >= 100 do not fit
    with pytest.raises(Exception, match=r"outside \[0, 100\)"):
        list(shards.iter_token_chunks(["xyz"], Broken()))


def test_failed_tokenization_leaves_no_cache(tmp_path):
    (tmp_path / "a.txt").write_text("good")
    (tmp_path / "b.txt").write_bytes(b"\xff")
    cfg = DataConfig(source=str(tmp_path / "*.txt"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="not UTF-8"):
        shards.load_token_stream(cfg, ByteTokenizer())
    assert not list((tmp_path / "cache").iterdir())


def test_real_gpt2_tokenizer_on_tinyshakespeare(tmp_path):
    from gpt2_jax import paths
    from gpt2_jax.tokenizer import Tokenizer
    tok = Tokenizer.load("gpt2")
    stream = shards.load_token_stream(DataConfig(), tok, workdir=tmp_path)
    # nanoGPT's data/shakespeare/prepare.py reports 301,966 + 36,059 = 338,025 GPT-2 tokens.
    assert stream.size == 338025 + 1 and stream[-1] == tok.eot_id == 50256
    assert (stream == tok.eot_id).sum() == 1
    text = paths.data_file("train_corpora/tinyshakespeare/input.txt").read_text()
    assert tok.decode(stream[:-1].tolist()) == text
    assert list((tmp_path / "token_cache").glob("input-gpt2-*/shard_00000.npy"))
