"""WSC273: both scorings equal a plain transformers implementation on the same weights; shared-
prefix requests equal whole requests; the readers agree on the real files."""
import json

import numpy as np
import pytest

from evals_reference import model, torch_score
from gpt2_jax.errors import DataError, InputError
from gpt2_jax.evals import formats, wsc
from gpt2_jax.evals.scoring import Scorer


def _torch_scores(schema, tok):
    """(full, partial) per candidate: log p(sentence | eot), and of the tokens after the option."""
    out = []
    for option in schema.options:
        ids = [tok.eot_id] + tok.encode(wsc.sentence(option, schema.continuation))
        lp, _ = torch_score(ids[:-1], ids[1:])
        out.append((lp.sum(), lp[len(tok.encode(option)):].sum()))
    return np.array(out)


@pytest.fixture(scope="module")
def schemas(data_dir):
    return formats.read_wsc273(data_dir=data_dir)


def test_both_scorings_equal_transformers(schemas):
    _, _, scorer, tok, _ = model()
    some = schemas[:24] + [s for s in schemas if s.continuation.startswith(".")][:4]
    got = wsc.score(scorer, tok, some)
    ref = np.stack([_torch_scores(s, tok) for s in some])
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    m = wsc.evaluate(scorer, tok, some)
    gold = np.array([s.gold for s in some])
    assert m["acc_full"] == pytest.approx(100 * np.mean(ref[:, :, 0].argmax(1) == gold))
    assert m["acc_partial"] == pytest.approx(100 * np.mean(ref[:, :, 1].argmax(1) == gold)) == m["acc"]
    assert m["n"] == 28


def test_shared_prefix_equals_whole_requests(schemas):
    params, cfg, _, tok, _ = model()
    some = schemas[:40]
    shared, whole = Scorer(params, cfg, batch_size=4), Scorer(params, cfg, batch_size=4, share_prefix=False)
    np.testing.assert_allclose(wsc.score(shared, tok, some), wsc.score(whole, tok, some), rtol=1e-5, atol=1e-5)
    assert wsc.evaluate(shared, tok, some) == wsc.evaluate(whole, tok, some)
    assert shared.stats.forward_tokens < whole.stats.forward_tokens
    reqs, where = wsc.requests(some, tok, cfg.n_positions)
    for pre, (a, b), common, _ in where:  # the two candidates share [eot] + the common tokens
        assert common > 0 and reqs[a][0][:1 + common] == reqs[b][0][:1 + common]
        assert reqs[pre] == (reqs[a][0][:1 + common], common)


def test_sentences_and_readers(schemas, data_dir):
    assert len(schemas) == 273
    s = schemas[0]
    assert wsc.sentence(*s.options[:1], s.continuation) == ("The city councilmen refused the demonstrators a permit "
                                                          "because the city councilmen feared violence.")
    dot = next(s for s in schemas if s.continuation == ".")
    assert wsc.sentence(dot.options[0], ".").endswith("students.")
    xml = formats.read_wsc273(data_dir / "wsc273" / "WSCollection.xml")  # the schemas, lm-eval's substitution
    assert len(xml) == 273 and [x.gold for x in xml] == [s.gold for s in schemas]
    assert [x.continuation for x in xml] == [s.continuation for s in schemas]
    assert xml[0].options == schemas[0].options
    assert xml[14].options[1].endswith("because his son")  # the XML answer as written (jsonl: "the son")


def test_bad_files_and_long_sentences(tmp_path):
    bad = tmp_path / "w.jsonl"
    bad.write_text(json.dumps({"context_options": ["a b"], "continuation": "c", "gold": 0}) + "\n")
    with pytest.raises(DataError, match=r"w.jsonl:1: expected \{\"context_options\": \[two strings\]"):
        formats.read_wsc273(bad)
    (tmp_path / "w.xml").write_text("<collection><schema><text><txt1>x")
    with pytest.raises(DataError, match="not valid XML"):
        formats.read_wsc273(tmp_path / "w.xml")
    _, cfg, scorer, tok, _ = model()
    long = formats.WSCSchema(("word " * 200 + "a", "word " * 200 + "b"), "c.", 0, 7)
    with pytest.raises(InputError, match=r"WSC schema 0 \(line 7\) is \d+ tokens, more than the model's context of 128"):
        wsc.evaluate(scorer, tok, [long])
