"""CoQA: the prompts, and greedy answers + F1/EM equal a direct PyTorch greedy decoder on the sample."""
import dataclasses

import numpy as np
import pytest

from evals_reference import model, torch_greedy
from gpt2_jax.evals import coqa, coqa_metric, readers


@pytest.fixture(scope="module")
def story(data_dir):
    return readers.read_coqa(data_dir / "coqa/samples/coqa-dev-v1.0.excerpt1story.json")[0]


def test_prompts(story):
    head = story.story + "\n\n"
    assert coqa.prompt(story, 0, "paper") == head + "Q: What color was Cotton?\nA:"
    assert coqa.prompt(story, 1, "paper") == head + "Q: What color was Cotton?\nA: white\n\nQ: Where did she live?\nA:"
    assert coqa.prompt(story, 1, "harness") == (head + "Q: What color was Cotton?\n\nA: white\n\n"
                                                "Q: Where did she live?\n\nA:")


def test_answer_extraction():
    assert coqa.extract_answer(" in a barn\n\nQ: Who?", "paper") == "in a barn"
    assert coqa.extract_answer("\nin a barn\nQ: Who?", "paper") == ""  # paper: stop at the first newline
    assert coqa.extract_answer("\nin a barn\nQ: Who?", "harness") == "in a barn"  # harness strips first


@pytest.mark.parametrize("mode,turns", [("paper", 12), ("harness", 6)])
def test_greedy_answers_and_scores_match_torch(story, mode, turns):
    params, cfg, scorer, tok, _ = model()
    s = dataclasses.replace(story, questions=story.questions[:turns], turn_ids=story.turn_ids[:turns],
                            references=story.references[:turns])
    n_new = 16
    metrics, preds = coqa.evaluate(scorer, tok, [s], mode, max_new_tokens=n_new)
    want = {}
    for t in range(turns):
        ids = tok.encode(coqa.prompt(s, t, mode))[-(cfg.n_positions - n_new):]
        text = tok.decode(torch_greedy(ids, n_new))
        want[(s.id, s.turn_ids[t])] = (text.split("\n")[0].strip() if mode == "paper"
                                       else text.split("\nQ:")[0].strip().split("\n")[0])
    assert preds == want
    assert metrics["n"] == turns
    if mode == "paper":
        ref = coqa_metric.evaluate([s], want)["overall"]
    else:
        sc = [coqa_metric.harness_turn_score(s.references[t], want[(s.id, s.turn_ids[t])]) for t in range(turns)]
        ref = {k: 100 * np.mean([x[k] for x in sc]) for k in ("f1", "em")}
    assert metrics["f1"] == pytest.approx(ref["f1"]) and metrics["em"] == pytest.approx(ref["em"])
