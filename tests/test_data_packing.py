"""gpt2_jax/data/packing.py: windows, train/val split, and batches as a pure function of the step."""
import numpy as np
import pytest

from gpt2_jax.data.packing import PackedDataset, local_batch_size
from gpt2_jax.errors import DataError

T = 8            # seq_len; windows are T+1 = 9 tokens
N_WINDOWS = 50   # -> 2 validation windows at val_fraction 0.05, 48 train


def make(n_tokens=N_WINDOWS * (T + 1) + 5, val_fraction=0.05, **kw):
    """A stream whose token i is i, so a window's first token names it: window w starts at w*(T+1)."""
    return PackedDataset(np.arange(n_tokens, dtype=np.int32), T, val_fraction, **kw)


def window_ids(batch):
    return batch["inputs"][:, 0] // (T + 1)


def test_windows_concatenate_back_to_the_stream():
    stream = np.random.default_rng(0).integers(0, 50257, size=N_WINDOWS * (T + 1) + 5).astype(np.uint16)
    ds = PackedDataset(stream, T, 0.05)
    assert (ds.num_train_windows, ds.num_val_windows) == (48, 2)
    rows = ds.windows(np.arange(N_WINDOWS))
    assert rows.dtype == np.int32 and rows.shape == (N_WINDOWS, T + 1)
    np.testing.assert_array_equal(rows.reshape(-1), stream[: N_WINDOWS * (T + 1)])


def test_windows_never_straddle_shards():
    a, b = np.arange(0, 20, dtype=np.int32), np.arange(100, 130, dtype=np.int32)  # 2 + 3 windows
    ds = PackedDataset([a, np.zeros(3, np.int32), b], T, 0.0)
    assert ds.num_train_windows == 5
    np.testing.assert_array_equal(ds.windows(np.arange(5)),
                                  np.concatenate([a[:18].reshape(2, 9), b[:27].reshape(3, 9)]))


def test_targets_are_inputs_shifted_by_one():
    batch = make().batch_at(3, global_batch_size=4, seed=0)
    assert batch["inputs"].shape == batch["targets"].shape == (4, T)
    assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
    np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])
    np.testing.assert_array_equal(batch["targets"][:, -1], batch["inputs"][:, -1] + 1)  # stream is arange


def test_batch_is_a_pure_function_of_seed_and_step():
    kw = dict(global_batch_size=4, seed=7)
    used = make()
    for step in range(20):
        used.batch_at(step, **kw)
    fresh = make().batch_at(13, **kw)
    np.testing.assert_array_equal(used.batch_at(13, **kw)["inputs"], fresh["inputs"])
    other_seed = make().batch_at(13, global_batch_size=4, seed=8)
    assert not np.array_equal(other_seed["inputs"], fresh["inputs"])
    assert not np.array_equal(make().batch_at(14, **kw)["inputs"], fresh["inputs"])


def test_process_shards_union_is_the_global_batch():
    ds = make()
    for step in (0, 11, 12, 30):  # 12 crosses into the second epoch (48 windows / 4 per step)
        whole = ds.batch_at(step, global_batch_size=4, seed=3)
        parts = [ds.batch_at(step, global_batch_size=4, seed=3, process_index=p, process_count=2)
                 for p in range(2)]
        assert all(p["inputs"].shape == (2, T) for p in parts)
        for key in ("inputs", "targets"):
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


@pytest.mark.parametrize("global_batch_size", [4, 5])  # 48 windows: whole steps, and steps that straddle epochs
def test_each_epoch_covers_every_train_window_once(global_batch_size):
    ds = make()
    steps = 2 * ds.num_train_windows // global_batch_size + 1
    ids = np.concatenate([window_ids(ds.batch_at(s, global_batch_size=global_batch_size, seed=1))
                          for s in range(steps)])
    n = ds.num_train_windows
    for epoch in range(2):
        assert sorted(ids[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert not np.array_equal(ids[:n], ids[n:2 * n])  # each epoch reshuffles
    assert not np.array_equal(ids[:n], np.arange(n))


def test_validation_windows_are_the_tail_and_never_trained_on():
    ds = make(val_fraction=0.1)
    assert (ds.num_train_windows, ds.num_val_windows) == (45, 5)
    seen = np.concatenate([window_ids(ds.batch_at(s, global_batch_size=6, seed=s)) for s in range(40)])
    assert seen.max() < ds.num_train_windows
    val = list(ds.eval_batches(2))
    np.testing.assert_array_equal(np.concatenate([window_ids(b) for b in val])[:5], np.arange(45, 50))


def test_eval_batches_pad_the_last_batch_with_zero_weight():
    ds = make(val_fraction=0.1)  # 5 val windows
    val = list(ds.eval_batches(2))
    assert len(val) == 3 and all(b["inputs"].shape == (2, T) for b in val)
    np.testing.assert_array_equal(val[-1]["weights"], np.stack([np.ones(T), np.zeros(T)]).astype(np.float32))
    assert sum(b["weights"].sum() for b in val) == 5 * T
    assert len(list(ds.eval_batches(2, max_batches=2))) == 2
    again = list(ds.eval_batches(2))
    assert all(np.array_equal(a["inputs"], b["inputs"]) for a, b in zip(val, again))
    parts = [list(ds.eval_batches(2, process_index=p, process_count=2)) for p in range(2)]
    for b, (p0, p1) in enumerate(zip(*parts)):
        np.testing.assert_array_equal(np.concatenate([p0["inputs"], p1["inputs"]]), val[b]["inputs"])
        np.testing.assert_array_equal(np.concatenate([p0["weights"], p1["weights"]]), val[b]["weights"])


def test_val_fraction_zero_has_no_validation():
    ds = make(val_fraction=0.0)
    assert (ds.num_train_windows, ds.num_val_windows) == (N_WINDOWS, 0)
    assert list(ds.eval_batches(4)) == []


def test_memmapped_shard_batches_match_in_memory(tmp_path):
    stream = np.arange(600, dtype=np.uint16)
    np.save(tmp_path / "s.npy", stream)
    mapped = PackedDataset(np.load(tmp_path / "s.npy", mmap_mode="r"), T, 0.05)
    plain = PackedDataset(stream.astype(np.int32), T, 0.05)
    for step in range(5):
        a, b = (d.batch_at(step, global_batch_size=3, seed=0) for d in (mapped, plain))
        assert a["inputs"].dtype == np.int32
        np.testing.assert_array_equal(a["inputs"], b["inputs"])


# ------------------------------------------------------------------------------ errors
def test_corpus_too_small_says_what_it_has_and_needs():
    with pytest.raises(DataError, match=r"too small: 12 tokens make 1 windows of seq_len\+1=9 tokens.*"
                                        r"need at least 2 windows = 18 tokens"):
        make(n_tokens=12)
    with pytest.raises(DataError, match=r"too small: 5 tokens make 0 windows.*need at least 1 windows = 9"):
        make(n_tokens=5, val_fraction=0.0)
    assert make(n_tokens=18).num_train_windows == 1


def test_batch_not_divisible_by_process_count():
    with pytest.raises(DataError, match=r"global_batch_size=5 is not divisible by process_count=2"):
        make().batch_at(0, global_batch_size=5, seed=0, process_index=0, process_count=2)
    with pytest.raises(DataError, match=r"process_index=2 must be in \[0, process_count=2\)"):
        local_batch_size(4, process_count=2, process_index=2)
    with pytest.raises(DataError, match="not divisible"):
        next(make().eval_batches(3, process_count=2))
