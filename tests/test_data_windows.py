"""gpt2_jax/data/windows.py: nanoGPT's random-offset batches (get_batch) and 90/10 split, as pure
functions of (seed, step): the same batches after a restart at step k, on any process count."""
import numpy as np
import pytest

from gpt2_jax.data import pipeline
from gpt2_jax.data.sources import DataConfig
from gpt2_jax.data.windows import RandomWindows
from gpt2_jax.errors import DataError

T = 16


@pytest.fixture(scope="module")
def stream():
    return np.random.default_rng(0).integers(0, 65, size=3001).astype(np.uint16)


@pytest.fixture(scope="module")
def rw(stream):
    return RandomWindows(stream, T, 0.1)


def test_split_is_nanogpts_first_90_percent(stream, rw):
    n = len(stream)
    assert (rw.num_train_tokens, rw.num_val_tokens) == (int(n * 0.9), n - int(n * 0.9)) == (2700, 301)
    assert rw.num_train_windows == 2700 - T  # torch.randint(len(train_data) - block_size)


def test_rows_are_get_batch_windows_inside_the_train_split(stream, rw):
    """x = data[i:i+T], y = data[i+1:i+1+T] for offsets in [0, n_train - T); over many steps the
    offsets reach both ends, so the last train token is used and no validation token is."""
    seen = []
    for step in range(400):
        offsets = rw.offsets_at(step, 8, seed=3)
        batch = rw.batch_at(step, global_batch_size=8, seed=3)
        for r, i in enumerate(offsets):
            np.testing.assert_array_equal(batch["inputs"][r], stream[i:i + T])
            np.testing.assert_array_equal(batch["targets"][r], stream[i + 1:i + 1 + T])
        assert batch["inputs"].dtype == np.int32 and batch["inputs"].shape == (8, T)
        seen.append(offsets)
    seen = np.concatenate(seen)
    assert seen.min() == 0 and seen.max() == rw.num_train_windows - 1


def test_batches_are_a_pure_function_of_seed_and_step(stream, rw):
    again = RandomWindows(stream.copy(), T, 0.1)
    kw = dict(global_batch_size=6, seed=5)
    for step in (0, 1, 17, 10_000):
        np.testing.assert_array_equal(rw.batch_at(step, **kw)["inputs"], again.batch_at(step, **kw)["inputs"])
    assert not np.array_equal(rw.offsets_at(0, 6, 5), rw.offsets_at(1, 6, 5))
    assert not np.array_equal(rw.offsets_at(0, 6, 5), rw.offsets_at(0, 6, 6))


def test_processes_split_the_global_batch(rw):
    whole = rw.batch_at(9, global_batch_size=6, seed=1)
    parts = [rw.batch_at(9, global_batch_size=6, seed=1, process_index=p, process_count=3) for p in range(3)]
    np.testing.assert_array_equal(np.concatenate([p["inputs"] for p in parts]), whole["inputs"])


@pytest.mark.parametrize("tf", [True, False], ids=["tf.data", "thread"])
def test_restart_at_step_k_yields_the_same_batches(stream, rw, monkeypatch, tf):
    """What the loop does on resume: train_batches(k, n) after a restart equals the tail of the
    uninterrupted train_batches(0, n), through tf.data and through the thread prefetcher."""
    if not tf:
        monkeypatch.setattr(pipeline.importlib.util, "find_spec", lambda name: None)
    data = pipeline.TrainData(rw, global_batch_size=4, seed=7)
    full = [b["inputs"] for b in data.train_batches(0, 12)]
    restarted = pipeline.TrainData(RandomWindows(stream.copy(), T, 0.1), global_batch_size=4, seed=7)
    tail = [b["inputs"] for b in restarted.train_batches(5, 12)]
    assert len(full) == 12 and len(tail) == 7
    for a, b in zip(full[5:], tail):
        np.testing.assert_array_equal(a, b)


def test_shards_are_one_stream(stream):
    """Windows straddle shard boundaries exactly as in the concatenated stream."""
    shards = [stream[:1000], stream[1000:1007], stream[1007:]]
    a, b = RandomWindows(shards, T, 0.1), RandomWindows(stream, T, 0.1)
    for step in range(50):
        np.testing.assert_array_equal(a.batch_at(step, global_batch_size=8, seed=0)["inputs"],
                                      b.batch_at(step, global_batch_size=8, seed=0)["inputs"])


def test_eval_batches_random_in_val_split_and_fixed(stream, rw):
    """estimate_loss: max_batches random windows of the validation split, the same at every eval."""
    first = list(rw.eval_batches(4, 5))
    again = list(RandomWindows(stream, T, 0.1).eval_batches(4, 5))
    assert len(first) == 5
    val = stream[rw.num_train_tokens:]
    windows = {tuple(val[i:i + T]) for i in range(len(val) - T)}
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
        assert (a["weights"] == 1).all()
        assert all(tuple(row) in windows for row in a["inputs"])
    halves = [list(rw.eval_batches(4, 5, process_index=p, process_count=2)) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate([halves[0][2]["inputs"], halves[1][2]["inputs"]]),
                                  first[2]["inputs"])


def test_eval_batches_without_limit_cover_the_val_split_once(rw, stream):
    batches = list(rw.eval_batches(4))
    n = rw.num_val_tokens // (T + 1)  # 301 // 17 = 17 consecutive windows
    assert len(batches) == -(-n // 4) == 5
    rows = np.concatenate([b["inputs"] for b in batches])
    weights = np.concatenate([b["weights"][:, 0] for b in batches])
    assert weights.sum() == n
    val = stream[rw.num_train_tokens:]
    np.testing.assert_array_equal(rows[weights == 1], val[: n * (T + 1)].reshape(n, T + 1)[:, :T])


def test_too_small_splits_and_bad_mode():
    with pytest.raises(DataError, match=r"train split .* of 18 tokens has 16 tokens, but a random window needs "
                                        r"seq_len\+1=17"):
        RandomWindows(np.arange(18), T, 0.1)
    RandomWindows(np.arange(20), T, 0.0)
    with pytest.raises(DataError, match=r"corpus too small: the validation split .* has 2 tokens"):
        RandomWindows(np.arange(20), 8, 0.1)
    with pytest.raises(DataError, match=r"windows='randm' is not one of \('packed', 'random'\)"):
        DataConfig(windows="randm")
    with pytest.raises(DataError, match="tokenizer='char'.*tokenizer_vocab_size=512.*set tokenizer_vocab_size=0"):
        DataConfig(tokenizer="char", tokenizer_vocab_size=512)


def test_make_train_data_random_windows_end_to_end(tmp_path):
    """A text corpus through the char tokenizer: the stream is the file's characters then eot, split 90/10."""
    from gpt2_jax.tokenizer import Tokenizer
    text = "".join(f"line {i} of the corpus\n" for i in range(300))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text)
    tok = Tokenizer.build_char([text], tmp_path / "v.json")
    cfg = DataConfig(source=str(corpus), tokenizer=tok.name, windows="random", val_fraction=0.1)
    data = pipeline.make_train_data(cfg, tok, seq_len=T, global_batch_size=4, seed=0)
    assert isinstance(data.packed, RandomWindows)
    n = len(text) + 1
    assert data.packed.num_tokens == n and data.packed.num_train_tokens == int(n * 0.9)
    batch = data.batch_at(3)
    starts = data.packed.offsets_at(3, 4, 0)
    assert [tok.decode(row) for row in batch["inputs"]] == [text[i:i + T] for i in starts]
