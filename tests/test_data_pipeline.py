"""gpt2_jax/data/pipeline.py: tf.data batches equal batch_at, and make_train_data end to end."""
import subprocess
import sys

import numpy as np
import pytest

from gpt2_jax.data import pipeline
from gpt2_jax.data.packing import PackedDataset
from gpt2_jax.data.sources import DataConfig
from gpt2_jax.errors import DataError


class ByteTokenizer:
    """Stand-in with the Tokenizer interface: UTF-8 bytes are ids, 256 is <|endoftext|>."""

    name, vocab_size, eot_id = "bytes", 257, 256

    def __init__(self):
        self.calls = 0

    def encode(self, text):
        return self.encode_batch([text])[0]

    def encode_batch(self, texts):
        self.calls += 1
        return [list(t.encode("utf-8")) for t in texts]


@pytest.fixture(scope="module")
def packed():
    stream = np.random.default_rng(0).integers(0, 50257, size=5000).astype(np.int32)
    return PackedDataset(stream, 16, 0.1)


def test_tf_dataset_yields_exactly_batch_at(packed):
    kw = dict(global_batch_size=6, seed=5, process_index=1, process_count=2)
    ds = pipeline.as_tf_dataset(packed, start_step=7, num_steps=30, **kw)  # 30 steps cross an epoch (264 windows)
    spec = ds.element_spec
    assert {k: (tuple(v.shape), v.dtype.name) for k, v in spec.items()} == {
        "inputs": ((3, 16), "int32"), "targets": ((3, 16), "int32")}
    got = list(ds.as_numpy_iterator())
    assert len(got) == 30
    for i, batch in enumerate(got):
        want = packed.batch_at(7 + i, **kw)
        for key in ("inputs", "targets"):
            np.testing.assert_array_equal(batch[key], want[key])


def test_tf_dataset_rejects_indivisible_batch(packed):
    with pytest.raises(DataError, match="global_batch_size=5 is not divisible by process_count=2"):
        pipeline.as_tf_dataset(packed, start_step=0, num_steps=1, global_batch_size=5, seed=0, process_count=2)


def test_make_train_data_end_to_end_and_resume(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(f'{{"text": "document {i} says hello"}}\n' for i in range(200)))
    cfg = DataConfig(source=str(corpus), val_fraction=0.1)
    tok = ByteTokenizer()
    kw = dict(seq_len=32, global_batch_size=4, seed=0, process_index=0, process_count=2,
              workdir=tmp_path / "wd")
    data = pipeline.make_train_data(cfg, tok, **kw)
    assert data.local_batch_size == 2 and data.tokens_per_step == 4 * 32
    assert list((tmp_path / "wd" / "token_cache").iterdir())
    calls = tok.calls
    first = list(data.train_batches(0, 6))
    resumed = pipeline.make_train_data(cfg, tok, **kw)  # a restarted run: same args, cached tokens
    assert tok.calls == calls
    later = list(resumed.train_batches(3, 6))
    for a, b in zip(first[3:], later):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
    np.testing.assert_array_equal(first[0]["inputs"], data.batch_at(0)["inputs"])
    evals = list(data.eval_batches(max_batches=2))
    assert len(evals) == 2 and evals[0]["inputs"].shape == (2, 32) and "weights" in evals[0]
    rows = np.concatenate([b["inputs"] for b in first] + [b["targets"][:, -1:] for b in first], axis=1)
    assert (rows == 256).any()  # documents are separated by <|endoftext|>


def test_make_train_data_checks_batch_before_tokenizing(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("text " * 100)
    tok = ByteTokenizer()
    with pytest.raises(DataError, match="not divisible by process_count=4"):
        pipeline.make_train_data(DataConfig(source=str(corpus)), tok, seq_len=8, global_batch_size=6,
                                 seed=0, process_count=4)
    assert tok.calls == 0


def test_make_train_data_reports_a_too_small_corpus(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("short")
    with pytest.raises(DataError, match=r"too small: 6 tokens make 0 windows of seq_len\+1=65"):
        pipeline.make_train_data(DataConfig(source=str(corpus)), ByteTokenizer(), seq_len=64,
                                 global_batch_size=2, seed=0)


def test_importing_the_data_package_does_not_import_tensorflow():
    code = ("import sys, gpt2_jax, gpt2_jax.data, gpt2_jax.data.pipeline; "
            "print('tensorflow' in sys.modules, 'tensorflow_datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
