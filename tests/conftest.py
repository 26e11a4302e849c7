"""Shared test fixtures. Tests read real data only through $GPT2_JAX_DATA_DIR (CI: ../shared/data)."""
import os
import pathlib

import pytest

from gpt2_jax.config import GPT2Config

# The README runs the tests with a relative GPT2_JAX_DATA_DIR (../shared/data); tests that start
# subprocesses in temporary directories need it absolute.
if os.environ.get("GPT2_JAX_DATA_DIR"):
    os.environ["GPT2_JAX_DATA_DIR"] = str(pathlib.Path(os.environ["GPT2_JAX_DATA_DIR"]).resolve())


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    root = os.environ.get("GPT2_JAX_DATA_DIR")
    if not root or not pathlib.Path(root).is_dir():
        pytest.fail("GPT2_JAX_DATA_DIR must point at the shared data dir (CI sets it to ../shared/data)")
    return pathlib.Path(root)


@pytest.fixture(scope="session")
def tiny_cfg() -> GPT2Config:
    """A 2-layer model small enough to compile in seconds, with the real GPT-2 vocabulary."""
    return GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128, attn_block_size=32)


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
    """gs://BUCKET/... served from tmp_path/gcs/BUCKET/... for everything that goes through
    etils.epath (the library's one path layer for workdirs and outputs): code that bypassed it
    would write a local ./gs:/ directory or fail instead. Yields the local root."""
    from etils.epath import gpath, testing

    # with TensorFlow installed epath sends gs:// to tf.io.gfile, past mock_epath's backends
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)

    root = tmp_path / "gcs"
    root.mkdir()

    def local(path):
        text = os.fspath(path)
        return str(root / text[len("gs://"):]) if text.startswith("gs://") else text

    def one(fn, path, *args, **kwargs):
        return fn(local(path), *args, **kwargs)

    def two(fn, path, dst, *args, **kwargs):
        return fn(local(path), local(dst), *args, **kwargs)

    calls = dict.fromkeys(("open", "exists", "isdir", "listdir", "makedirs", "mkdir", "remove", "rmtree", "stat",
                           "glob", "walk"), one)
    with testing.mock_epath(**calls, rename=two, replace=two, copy=two):
        yield root
