"""Readers of the official evaluation files: real files and samples, explicit paths, clear errors."""
import json

import pytest

from gpt2_jax.errors import DataError, InputError
from gpt2_jax.evals import readers


def test_lambada_real_file(data_dir):
    texts = readers.read_lambada(data_dir=data_dir)
    assert len(texts) == 5153
    assert texts[0].startswith("In my palm is a clear stone") and texts[0].endswith("signs")


def test_lambada_malformed_line_names_path_and_line(tmp_path):
    p = tmp_path / "lambada_test.jsonl"
    p.write_text('{"text": "a b c"}\n{"text": "d e f"}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"lambada_test.jsonl:3: malformed JSON"):
        readers.read_lambada(p)
    p.write_text('{"text": "a b c"}\n{"txt": "d e"}\n')
    with pytest.raises(DataError, match=r":2: no field 'text' \(found \['txt'\]\); the official file .* re-download it"):
        readers.read_lambada(p)


def test_lambada_passage_needs_context_and_a_target_word(tmp_path):
    p = tmp_path / "lambada_test.jsonl"
    for bad, what in (('{"text": "lonely"}', "a single word"), ('{"text": "  "}', "no text"),
                      ('{"text": 3}', "is a int, expected a string")):
        p.write_text('{"text": "a b c"}\n\n' + bad + "\n")
        with pytest.raises(DataError, match=rf"lambada_test.jsonl:3: .*{what}"):
            readers.read_lambada(p)
    p.write_text('{"text": "a b c"}\n\n{"text": "d e"}\n')  # blank lines are skipped
    assert readers.read_lambada(p) == ["a b c", "d e"]


def test_missing_file_names_path_and_source(tmp_path):
    with pytest.raises(DataError) as e:
        readers.read_lambada(data_dir=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "lambada" / "lambada_test.jsonl") in msg and "openaipublic" in msg
    with pytest.raises(DataError, match=r"cbtest_NE_valid_2000ex.txt.*CBTest.tgz"):
        readers.read_cbt(kind="NE", split="valid", data_dir=tmp_path)
    with pytest.raises(DataError, match="data file not found: .*nope.txt"):
        readers.read_text("ptb", tmp_path / "nope.txt")
    with pytest.raises(InputError, match="no evaluation file for dataset 'ptb' split 'valid'"):
        readers.resolve("ptb", "valid")


@pytest.mark.parametrize("kind,split,answer", [("CN", "test", "man"), ("NE", "test", "Keddah"),
                                               ("CN", "valid", None), ("NE", "valid", None)])
def test_cbt_samples(data_dir, kind, split, answer):
    n = {"test": "2500ex", "valid": "2000ex"}[split]
    qs = readers.read_cbt(data_dir / "cbt" / "samples" / f"cbtest_{kind}_{split}_{n}.excerpt1.txt", kind, split)
    assert len(qs) == 1
    q = qs[0]
    assert len(q.context) == 20 and len(q.candidates) == 10 and q.answer in q.candidates
    assert "XXXXX" in q.query and q.line == 21
    if answer:
        assert q.answer == answer
    context_lines = set((data_dir / "cbt" / f"cbt_{split}.txt").read_text().splitlines())
    assert all(s in context_lines for s in q.context)  # the sentences come from the real books


def test_cbt_malformed(tmp_path, data_dir):
    good = (data_dir / "cbt/samples/cbtest_CN_test_2500ex.excerpt1.txt").read_text().split("\n")
    bad = list(good)
    bad[4] = "7 out of order"
    p = tmp_path / "cbt.txt"
    p.write_text("\n".join(bad))
    with pytest.raises(DataError, match=r"cbt.txt:5: sentence number 7 out of sequence; expected 5"):
        readers.read_cbt(p)
    bad = list(good)
    bad[20] = bad[20].replace("|wings", "")
    p.write_text("\n".join(bad))
    with pytest.raises(DataError, match=r"cbt.txt:21: expected 10 candidates"):
        readers.read_cbt(p)
    p.write_text("\n".join(good[:5]))
    with pytest.raises(DataError, match="ends after 5 context sentences"):
        readers.read_cbt(p)


def test_coqa_sample(data_dir):
    stories = readers.read_coqa(data_dir / "coqa/samples/coqa-dev-v1.0.excerpt1story.json")
    assert len(stories) == 1
    s = stories[0]
    assert s.source == "mctest" and s.id == "3dr23u6we5exclen4th8uq9rb42tel"
    assert len(s.questions) == 12 and s.turn_ids == tuple(range(1, 13))
    assert s.questions[0] == "What color was Cotton?"
    assert s.references[0] == ("white", "white", "white", "white")  # main answer + 3 additional sets
    assert all(len(r) == 4 for r in s.references)


def test_coqa_malformed(tmp_path, data_dir):
    doc = json.loads((data_dir / "coqa/samples/coqa-dev-v1.0.excerpt1story.json").read_text())
    del doc["data"][0]["story"]
    p = tmp_path / "coqa.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"story #0 \(3dr23u6we5exclen4th8uq9rb42tel\) is malformed.*'story'"):
        readers.read_coqa(p)
    p.write_text('{"version": "1.0",\n "data": [\n  {"id": }\n]}')
    with pytest.raises(DataError, match=r"coqa.json:3: not valid JSON"):
        readers.read_coqa(p)


def test_text_files(data_dir):
    wt2 = readers.read_text("wikitext2", data_dir=data_dir)
    assert wt2.count("\n") == 4358 and len(wt2.split()) == 241211
    ptb = readers.read_text("ptb", data_dir=data_dir)
    assert ptb.count("\n") == 3761 and len(ptb.split()) == 78669


def test_char_benchmarks_take_the_last_five_percent(tmp_path):
    p = tmp_path / "text8"
    body = ("abc def " * 2500).encode()
    p.write_bytes(body)  # 20000 bytes -> test split = last 1000
    assert readers.read_char_benchmark("text8", p) == body[19000:]
    p.write_bytes(b"abc Def")
    with pytest.raises(DataError, match=r"text8:1: byte 4 is b'D'"):
        readers.read_char_benchmark("text8", p)
    e = tmp_path / "enwik8"
    e.write_bytes(bytes(range(256)) * 10)
    assert readers.read_char_benchmark("enwik8", e) == (bytes(range(256)) * 10)[2432:]


def test_invalid_utf8_reports_line(tmp_path):
    p = tmp_path / "ptb.test.txt"
    p.write_bytes(b" a b \n c \xff d \n")
    with pytest.raises(DataError, match=r"ptb.test.txt:2: not UTF-8 \(byte 0xff at byte offset 9\); re-download"):
        readers.read_text("ptb", p)
