"""CoQA F1 / EM exactly as the official evaluation script (evaluate-v1.0.py, CoQAEvaluator) defines
them: SQuAD normalisation (lower-case, drop punctuation and a/an/the, collapse whitespace), bag-of-
token F1, and for n > 1 references the average over the n leave-one-out subsets of the best score
against the remaining n - 1 references. Scores per domain, in-domain, out-of-domain and overall
are turn-weighted averages in percent. Also the predictions file in the official format."""
from __future__ import annotations

import collections
import json
import os
import re
import string
from typing import Iterable, Mapping, Sequence

from etils import epath

from gpt2_jax.evals.readers import CoQAStory

IN_DOMAIN = ("mctest", "gutenberg", "race", "cnn", "wikipedia")
OUT_DOMAIN = ("reddit", "science")
DOMAIN_NAMES = {"mctest": "children_stories", "gutenberg": "literature", "race": "mid-high_school",
                "cnn": "news", "wikipedia": "wikipedia", "science": "science", "reddit": "reddit"}
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def get_tokens(s: str) -> list[str]:
    return normalize_answer(s).split() if s else []


def compute_exact(gold: str, pred: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(pred))


def compute_f1(gold: str, pred: str) -> float:
    gold_toks, pred_toks = get_tokens(gold), get_tokens(pred)
    if not gold_toks or not pred_toks:  # no-answer: 1 if both are empty, else 0
        return float(gold_toks == pred_toks)
    same = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def turn_score(golds: Sequence[str], pred: str) -> dict[str, float]:
    """{'em', 'f1'} in [0, 1] of one turn against its references (leave-one-out if several)."""
    golds = list(golds)
    if len(golds) > 1:
        subsets = [golds[:i] + golds[i + 1:] for i in range(len(golds))]
    else:
        subsets = [golds]
    em = sum(max(compute_exact(g, pred) for g in sub) for sub in subsets)
    f1 = sum(max(compute_f1(g, pred) for g in sub) for sub in subsets)
    n = max(1, len(golds))
    return {"em": em / n, "f1": f1 / n}


def evaluate(stories: Iterable[CoQAStory], preds: Mapping[tuple[str, int], str]) -> dict[str, dict]:
    """The official `model_performance`: {domain | in_domain | out_domain | overall: {em, f1, turns}}
    (percent, unrounded). A missing prediction scores 0, as in the official script."""
    totals: dict[str, collections.Counter] = {s: collections.Counter() for s in IN_DOMAIN + OUT_DOMAIN}
    for story in stories:
        counter = totals.setdefault(story.source, collections.Counter())
        for turn_id, golds in zip(story.turn_ids, story.references):
            key = (story.id, turn_id)
            if key in preds:
                sc = turn_score(golds, preds[key])
                counter["em"] += sc["em"]
                counter["f1"] += sc["f1"]
            counter["turns"] += 1

    def summary(c: collections.Counter) -> dict[str, float]:
        n = c["turns"]
        return {"em": 100.0 * c["em"] / max(1, n), "f1": 100.0 * c["f1"] / max(1, n), "turns": n}

    scores = {DOMAIN_NAMES.get(src, src): summary(c) for src, c in totals.items()}
    ind = sum((totals[s] for s in IN_DOMAIN), collections.Counter())
    outd = sum((totals[s] for s in totals if s not in IN_DOMAIN), collections.Counter())
    scores["in_domain"], scores["out_domain"] = summary(ind), summary(outd)
    scores["overall"] = summary(ind + outd)
    return scores


def harness_turn_score(golds: Sequence[str], pred: str) -> dict[str, float]:
    """lm-eval-harness `coqa`: references de-duplicated case-insensitively (main answer first),
    then the same leave-one-out rule."""
    uniq: list[str] = []
    for g in golds:
        if g.lower() not in map(str.lower, uniq):
            uniq.append(g)
    return turn_score(uniq, pred)


def write_predictions(preds: Mapping[tuple[str, int], str], path: str | os.PathLike) -> None:
    """The official predictions file: a JSON list of {"id", "turn_id", "answer"}."""
    rows = [{"id": sid, "turn_id": tid, "answer": ans} for (sid, tid), ans in preds.items()]
    epath.Path(path).write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")


def read_predictions(path: str | os.PathLike) -> dict[tuple[str, int], str]:
    with open(path, encoding="utf-8") as f:
        return {(p["id"], int(p["turn_id"])): p["answer"] for p in json.load(f)}
