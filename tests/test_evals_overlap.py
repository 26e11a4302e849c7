"""8-gram Bloom-filter overlap (paper §4): normalisation, filter correctness, exact-set agreement."""
import json

import numpy as np

from gpt2_jax.evals import overlap as ov


def _exact_percent(train_text: str, test_text: str, n: int = 8) -> float:
    """Independent: the exact share of test n-grams present in the training text's n-gram set."""
    def grams(t):
        w = [x for x in "".join(c if c.isalnum() else " " for c in t.lower()).split()]
        return [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
    train = set(grams(train_text))
    test = grams(test_text)
    return 100.0 * sum(g in train for g in test) / len(test)


def test_normalisation():
    assert ov.normalize("Hello, World-2!  It's  <unk> café_bar") == ["hello", "world", "2", "it", "s", "unk",
                                                                   "café", "bar"]
    assert list(ov.ngrams(["a", "b", "c"], 2)) == ["a b", "b c"]


def test_bloom_filter_has_no_false_negatives_and_few_false_positives():
    bf = ov.BloomFilter(capacity=5000, fp_rate=1e-3)
    items = [f"item {i}" for i in range(5000)]
    bf.add(items)
    assert bf.contains(items).all()
    fp = bf.contains([f"other {i}" for i in range(20000)]).mean()
    assert fp < 3e-3


def test_overlap_matches_exact_sets(tmp_path):
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(300)]
    train_words = list(rng.choice(vocab, 4000))
    copied = " ".join(train_words[1000:1100])  # 100 words copied from training: 93 shared 8-grams
    test_text = " ".join(rng.choice(vocab, 200)) + ". " + copied.upper() + "!! " + " ".join(rng.choice(vocab, 100))
    train_text = " ".join(train_words)
    (tmp_path / "a.txt").write_text(train_text[:10000])
    (tmp_path / "b.txt").write_text(train_text[10000:])
    # n-grams never span files, so the exact reference uses the same two documents
    want = _exact_percent(train_text[:10000] + " | " * 8 + train_text[10000:], test_text)
    got = ov.overlap([tmp_path / "a.txt", tmp_path / "b.txt"], {"t": test_text})["t"]
    assert abs(got["percent"] - want) < 1e-9 and want > 20
    assert got["ngrams"] == 300 + 100 - 7


def test_chunked_reading_keeps_words_across_chunk_edges(tmp_path):
    text = "Alpha beta, gamma-delta epsilon. " * 50
    p = tmp_path / "c.txt"
    p.write_text(text)
    words = [w for chunk in ov._file_words(p, chunk_chars=7) for w in chunk]
    assert words == ov.normalize(text)


def test_overlap_report_on_cbt_books(data_dir, tmp_path):
    sample = data_dir / "cbt/samples/cbtest_CN_test_2500ex.excerpt1.txt"
    out = tmp_path / "overlap.json"
    res = ov.overlap_report([data_dir / "cbt/cbt_test.txt"], "cbt_cn", output=out, files={"cbt_cn": sample})
    assert json.loads(out.read_text()) == res
    q_text = ov.eval_set_text("cbt_cn", path=sample)
    want = _exact_percent((data_dir / "cbt/cbt_test.txt").read_text(), q_text)
    assert abs(res["cbt_cn"]["percent"] - want) < 1e-9
    assert want > 90  # the question's sentences are verbatim from the test books


def test_wsc273_overlap_reads_sentences_not_json_keys(data_dir, tmp_path):
    """The WSC273 eval set is its 273 sentences (right candidate substituted), not the jsonl's text."""
    text = ov.eval_set_text("wsc273", data_dir)
    lines = text.splitlines()
    assert len(lines) == 273
    assert lines[0] == "The city councilmen refused the demonstrators a permit because the city councilmen feared violence."
    assert "context_options" not in text and "continuation" not in text
    corpus = tmp_path / "train.txt"
    corpus.write_text(lines[0] + "\n")
    res = ov.overlap([corpus], {"wsc273": text})["wsc273"]
    assert res["ngrams"] == len(ov.normalize(text)) - 7
    assert 0 < res["percent"] < 5  # that one sentence's 8-grams, and nothing from JSON keys
