"""Encode/decode throughput (MB/s) of gpt2_jax's Tokenizer vs raw tiktoken and HF `tokenizers`
on WikiText-2-raw test. Usage: GPT2_JAX_DATA_DIR=... python benchmarks/bench_tokenizer.py"""
import os
import time

from gpt2_jax.paths import data_dir
from gpt2_jax.tokenizer import EOT, Tokenizer


def best_of(fn, repeats=5):
    """Lowest wall time of `repeats` calls (less noise on a shared machine)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    vocab = data_dir() / "gpt2_vocab"
    text = (data_dir() / "wikitext/wikitext-2-raw/wiki.test.raw").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    mb = len(text.encode("utf-8")) / 1e6

    t0 = time.perf_counter()
    tok = Tokenizer.from_dir(vocab)
    load_s = time.perf_counter() - t0

    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # no /tmp cache of the local files
    raw = tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, special_tokens={EOT: 50256},
                            mergeable_ranks=data_gym_to_mergeable_bpe_ranks(str(vocab / "vocab.bpe"),
                                                                            str(vocab / "encoder.json")))
    ids = tok.encode(text)
    assert ids == raw.encode_ordinary(text)
    rows = [
        ("Tokenizer.encode (whole file)", lambda: tok.encode(text)),
        ("tiktoken encode_ordinary (whole file)", lambda: raw.encode_ordinary(text)),
        ("Tokenizer.encode_batch (lines, 2 threads)", lambda: tok.encode_batch(lines, num_threads=2)),
        ("tiktoken encode_ordinary_batch (lines, 2 thr)", lambda: raw.encode_ordinary_batch(lines, num_threads=2)),
        ("Tokenizer.decode (whole file)", lambda: tok.decode(ids)),
        ("tiktoken decode (whole file)", lambda: raw.decode(ids)),
    ]
    try:
        import tokenizers
        from tokenizers import models, pre_tokenizers

        hf = tokenizers.Tokenizer(models.BPE.from_file(str(vocab / "encoder.json"), str(vocab / "vocab.bpe")))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        rows.append(("HF tokenizers encode_batch (lines)", lambda: hf.encode_batch(lines, add_special_tokens=False)))
    except ImportError:
        pass
    print(f"wiki.test.raw: {mb:.2f} MB, {len(ids)} tokens; Tokenizer.from_dir load {load_s * 1e3:.0f} ms")
    print(f"{'what':48s} {'s':>7s} {'MB/s':>7s}")
    for name, fn in rows:
        s = best_of(fn)
        print(f"{name:48s} {s:7.3f} {mb / s:7.1f}")


if __name__ == "__main__":
    main()
