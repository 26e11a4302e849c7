"""Readers of the official CNN/DailyMail, WMT-14 and Natural Questions formats on small files
written in those formats (WSC273's readers are tested on the real files in test_evals_wsc.py)."""
import gzip
import json

import pytest

import evals_samples as S
from gpt2_jax.errors import DataError, InputError
from gpt2_jax.evals import formats


def test_cnn_dm_from_archives_and_extracted_dirs(tmp_path):
    urls = S.write_cnn_dm(tmp_path / "a")
    stories = formats.read_cnn_dm(urls)
    assert [s.id for s in stories] == [S.sha1(a[0]) for a in S.ARTICLES]  # url-list order; empty one skipped
    for s, (_, _, article, highlights) in zip(stories, S.ARTICLES):
        assert s.article == article and list(s.highlights) == highlights
    assert [s.id for s in formats.read_cnn_dm(urls, limit=2)] == [S.sha1(S.ARTICLES[0][0])]
    import tarfile
    for name in ("cnn_stories.tgz", "dailymail_stories.tgz"):
        with tarfile.open(tmp_path / "a" / name) as t:
            t.extractall(tmp_path / "b", filter="data")
    (tmp_path / "b" / "all_test.txt").write_bytes(urls.read_bytes())
    assert formats.read_cnn_dm(tmp_path / "b" / "all_test.txt") == stories


def test_cnn_dm_missing_stories_name_the_fix(tmp_path):
    (tmp_path / "all_test.txt").write_text("http://example.com/a\n")
    with pytest.raises(DataError, match=r"1 of 1 stories of all_test.txt are in neither cnn_stories.tgz.*"
                                        r"download\(\['cnn_dm'\]\)"):
        formats.read_cnn_dm(tmp_path / "all_test.txt")
    (tmp_path / "cnn_stories.tgz").write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable tar archive"):
        formats.read_cnn_dm(tmp_path / "all_test.txt")


def test_parse_story():
    article, highlights = formats.parse_story("Line one.\n\nLine two.\n\n@highlight\n\nH1\n\n@highlight\n\nH2\n")
    assert article == "Line one.\n\nLine two." and highlights == ("H1", "H2")


def test_wmt14_pairs_are_read_as_sacrebleu_reads_them(tmp_path):
    from sacrebleu.dataset.fake_sgml import FakeSGMLDataset  # sacrebleu's own reader (no download: no __init__)
    root = S.write_wmt(tmp_path)
    for direction, src, ref in (("en_fr", "src.en", "ref.fr"), ("fr_en", "src.fr", "ref.en")):
        pairs = formats.read_wmt14(direction, root / f"newstest2014-fren-{src}.sgm")
        for name, column in ((src, 0), (ref, 1)):
            out = tmp_path / f"{name}.txt"
            reader = FakeSGMLDataset.__new__(FakeSGMLDataset)
            reader._convert_format(str(root / f"newstest2014-fren-{name}.sgm"), str(out))
            assert [p[column] for p in pairs] == out.read_text().splitlines()
    assert pairs[2][1] == "The weather is nice today."  # whitespace collapsed, as sacrebleu does
    assert formats.read_wmt14("en_fr", root / "newstest2014-fren-src.en.sgm")[0] == S.PAIRS[0]


def test_wmt14_errors(tmp_path):
    root = S.write_wmt(tmp_path)
    (root / "newstest2014-fren-ref.fr.sgm").unlink()
    with pytest.raises(DataError, match=r"no reference file beside .*src.en.sgm: expected newstest2014-fren-ref.fr.sgm"):
        formats.read_wmt14("en_fr", root / "newstest2014-fren-src.en.sgm")
    (root / "newstest2014-fren-ref.en.sgm").write_text('<refset>\n<seg id="1">only one</seg>\n</refset>\n')
    with pytest.raises(DataError, match="has 5 segments but newstest2014-fren-ref.en.sgm 1"):
        formats.read_wmt14("fr_en", root / "newstest2014-fren-src.fr.sgm")
    with pytest.raises(InputError, match="direction 'en_de'"):
        formats.read_wmt14("en_de", root / "x")


def test_natural_questions_open_and_official_formats(tmp_path):
    nq_open, official = S.write_nq(tmp_path)
    qs = formats.read_nq(nq_open)
    assert [(q.question, list(q.answers)) for q in qs] == [(r["question"], r["answer"]) for r in S.NQ_OPEN]
    off = formats.read_nq(official)
    assert [(q.question, q.answers) for q in off] == [("who wrote moby dick", ("Herman Melville",)),
                                                     ("what is the capital of france", ("Paris",))]
    plain = tmp_path / "official" / "nq-dev-01.jsonl"
    plain.parent.mkdir()
    plain.write_text(gzip.decompress(official.read_bytes()).decode())
    assert formats.read_nq(plain.parent) == off  # a directory of shards
    assert len(formats.read_nq(official, max_answer_tokens=7)) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"q": "x"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: expected an NQ-Open record"):
        formats.read_nq(bad)
