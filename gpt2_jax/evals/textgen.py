"""Shared pieces of the generation tasks (CNN/DailyMail, WMT-14, Natural Questions): sentence
splitting of generated text, few-shot prompts that fit the context, and the metrics, computed by
their well-kept packages (rouge-score, sacrebleu; the [evals] extra) or, for exact match, by the
SQuAD normalisation the official scripts share (coqa_metric.normalize_answer)."""
from __future__ import annotations

import re
from typing import Sequence

from gpt2_jax.evals.coqa_metric import normalize_answer
from gpt2_jax.extras import require

# A sentence ends at . ! ? (then closing quotes/brackets) before whitespace, unless the word is a
# common abbreviation or a single capital (an initial); a newline always ends one.
_END = re.compile(r"[.!?]+[\"'”’»)\]]*(?=\s|$)")
_ABBREV = frozenset("mr mrs ms dr prof st jr sr vs etc inc ltd co corp gen gov sen rep rev no mt ft jan feb mar "
                    "apr jun jul aug sep sept oct nov dec u.s u.k u.n e.g i.e m mme mlle".split())


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped, in order (a rule-based splitter: no model data needed)."""
    out = []
    for line in text.split("\n"):
        start = 0
        for m in _END.finditer(line):
            word = line[start:m.start()].split()[-1:] or [""]
            w = word[0].lower().lstrip("\"'“‘«(")
            if m.group().startswith(".") and len(m.group().rstrip("\"'”’»)]")) == 1 and (
                    w in _ABBREV or (len(w) == 1 and w.isalpha())):
                continue
            sent = line[start:m.end()].strip()
            if sent:
                out.append(sent)
            start = m.end()
        rest = line[start:].strip()
        if rest:
            out.append(rest)
    return out


def first_sentences(text: str, n: int) -> list[str]:
    return split_sentences(text)[:n]


def few_shot_prompt(tok, examples: Sequence[str], query: str, budget: int) -> list[int]:
    """Tokens of "".join(examples) + query, dropping the earliest examples until it fits in
    `budget` tokens (then keeping the query's end)."""
    for k in range(len(examples) + 1):
        ids = tok.encode("".join(examples[k:]) + query)
        if len(ids) <= budget:
            return ids
    return ids[-budget:]


def example_indices(i: int, n_items: int, k: int) -> list[int]:
    """The few-shot examples of item i: the first k items other than i itself."""
    return [j for j in range(min(n_items, k + 1)) if j != i][:k]


# ----------------------------------------------------------------------------- metrics
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_PACKAGES = {"cnn_dm": ("rouge_score.rouge_scorer", "CNN/DailyMail ROUGE"), "wmt14_en_fr": ("sacrebleu", "WMT-14 BLEU"),
             "wmt14_fr_en": ("sacrebleu", "WMT-14 BLEU")}


def require_metrics(tasks) -> None:
    """Import the metric packages of `tasks` now (MissingExtra naming [evals] if absent), so a
    core install fails before it evaluates rather than after."""
    for task in tasks:
        if task in _PACKAGES:
            require(_PACKAGES[task][0], extra="evals", feature=_PACKAGES[task][1])


def rouge(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE F1 (percent) by rouge-score with Porter stemming; texts are their sentences
    joined by newlines (rougeLsum is summary-level ROUGE-L over those sentences)."""
    rouge_scorer = require(*_PACKAGES["cnn_dm"][:1], extra="evals", feature=_PACKAGES["cnn_dm"][1])
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references):
        scores = scorer.score("\n".join(ref), "\n".join(pred))
        for k in ROUGE_TYPES:
            totals[k] += scores[k].fmeasure
    n = max(1, len(predictions))
    return {k: 100.0 * v / n for k, v in totals.items()}


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU by sacrebleu with its defaults (13a tokenization, one reference)."""
    sacrebleu = require(_PACKAGES["wmt14_en_fr"][0], extra="evals", feature=_PACKAGES["wmt14_en_fr"][1])
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def exact_match(prediction: str, answers: Sequence[str]) -> bool:
    """SQuAD exact match: equal to any answer after lower-casing and dropping punctuation,
    articles and extra whitespace."""
    pred = normalize_answer(prediction)
    return any(pred == normalize_answer(a) for a in answers)
