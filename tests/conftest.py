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
