"""CoQA F1 / EM against hand-worked examples of the official script's definitions."""
import json

import pytest

from gpt2_jax.evals import coqa_metric as m
from gpt2_jax.evals.readers import CoQAStory


def test_normalisation_and_token_f1():
    assert m.normalize_answer("The Cat, in  a hat!") == "cat in hat"
    assert m.compute_exact("An apple.", "apple") == 1
    # gold [white, kitten] vs pred [white, cat]: 1 shared token, P = R = 1/2
    assert m.compute_f1("the white kitten", "a white cat") == pytest.approx(0.5)
    # gold [white] vs pred [white, cat]: P = 1/2, R = 1 -> F1 = 2/3
    assert m.compute_f1("white", "white cat") == pytest.approx(2 / 3)
    assert m.compute_f1("unknown", "") == 0.0
    assert m.compute_f1("a", "the") == 1.0  # both normalise to no tokens: agree
    assert m.compute_f1("a a b", "a b b") == pytest.approx(2 / 3)  # articles go: [b] vs [b, b], P 1/2 R 1


def test_leave_one_out_over_four_references():
    golds = ["white", "white kitten", "a white cat", "black"]
    # drop 0 -> best of {white kitten .5, white cat 1, black 0} = 1, EM 1
    # drop 1 -> best of {white 2/3, white cat 1, black 0}      = 1, EM 1
    # drop 2 -> best of {white 2/3, white kitten .5, black 0}  = 2/3, EM 0
    # drop 3 -> best of {white 2/3, white kitten .5, white cat 1} = 1, EM 1
    sc = m.turn_score(golds, "white cat")
    assert sc["f1"] == pytest.approx((1 + 1 + 2 / 3 + 1) / 4)
    assert sc["em"] == pytest.approx(3 / 4)
    assert m.turn_score(["Paris"], "paris.") == {"em": 1.0, "f1": 1.0}  # one reference: no leave-one-out


def test_harness_deduplicates_references():
    golds = ["White", "white", "white kitten"]
    assert m.turn_score(golds, "white") == {"em": 1.0, "f1": 1.0}
    # lm-eval keeps ["White", "white kitten"]: (2/3 + 1) / 2 and EM (0 + 1) / 2
    sc = m.harness_turn_score(golds, "white")
    assert sc["f1"] == pytest.approx(5 / 6) and sc["em"] == pytest.approx(0.5)


def _story(sid, source, refs):
    n = len(refs)
    return CoQAStory(sid, source, "story", tuple(f"q{i}" for i in range(n)), tuple(range(1, n + 1)),
                     tuple(tuple(r) for r in refs))


def test_domain_breakdown_and_missing_predictions():
    stories = [_story("s1", "mctest", [["yes", "yes"], ["the red ball", "red ball"]]),
               _story("s2", "reddit", [["no"]])]
    preds = {("s1", 1): "Yes", ("s1", 2): "ball"}  # s2 turn 1 is missing -> scores 0
    sc = m.evaluate(stories, preds)
    # s1 turn 2: refs [red ball] / [red ball] each give F1(red ball, ball) = 2/3, EM 0
    assert sc["children_stories"] == {"em": 50.0, "f1": pytest.approx(100 * (1 + 2 / 3) / 2), "turns": 2}
    assert sc["reddit"] == {"em": 0.0, "f1": 0.0, "turns": 1}
    assert sc["in_domain"]["f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert sc["out_domain"] == {"em": 0.0, "f1": 0.0, "turns": 1}
    assert sc["overall"]["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert sc["overall"]["em"] == pytest.approx(100 / 3) and sc["overall"]["turns"] == 3


def test_predictions_file_official_format(tmp_path):
    preds = {("s1", 1): "white", ("s1", 2): "in a barn"}
    p = tmp_path / "preds.json"
    m.write_predictions(preds, p)
    rows = json.loads(p.read_text())
    assert rows == [{"id": "s1", "turn_id": 1, "answer": "white"}, {"id": "s1", "turn_id": 2, "answer": "in a barn"}]
    assert m.read_predictions(p) == preds
