"""Children's Book Test (CN: common nouns, NE: named entities), GPT-2 paper §3.2.

For each of the 10 candidates we score the candidate and the rest of the query sentence (its
summed log-probability) given the 20 context sentences and the query up to the blank, and predict
the candidate with the highest score (first on ties). Metric: accuracy in percent.

`paper`: text de-tokenized (PTB-style quotes, brackets, clitics; see detokenizers.cbt_detokenize)
as the paper does for all its LM benchmarks, on the validation split by default because the paper
reports validation results (one CBT test book, The Jungle Book, is in WebText).
`harness` (lm-eval-harness has no CBT task; same rule in its loglikelihood-ranking style): the
raw tokenized text, test split by default.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gpt2_jax.evals.detokenizers import cbt_detokenize
from gpt2_jax.evals.readers import CBTQuestion
from gpt2_jax.evals.scoring import Scorer, encode_pair, pair_request

DEFAULT_SPLIT = {"paper": "valid", "harness": "test"}


def texts(q: CBTQuestion, candidate: str, mode: str) -> tuple[str, str]:
    """(context, continuation) strings for one candidate: the continuation is the candidate and
    the rest of the query sentence, with its leading space when one separates it."""
    before, _, after = q.query.partition("XXXXX")
    pre_toks = " ".join(q.context).split(" ") + before.split()
    toks = pre_toks + [candidate] + after.split()
    if mode == "harness":
        return " ".join(pre_toks), " " + " ".join(toks[len(pre_toks):])
    text, starts = cbt_detokenize(toks)
    cut = starts[len(pre_toks)]
    if cut and text[cut - 1] == " ":
        cut -= 1
    return text[:cut], text[cut:]


def requests(q: CBTQuestion, mode: str, tokenizer, max_len: int) -> list[tuple[list[int], int]]:
    out = []
    for cand in q.candidates:
        ctx, cont = encode_pair(tokenizer, *texts(q, cand, mode))
        out.append(pair_request(ctx, cont, max_len))
    return out


def evaluate(scorer: Scorer, tokenizer, questions: list[CBTQuestion], mode: str) -> dict[str, Any]:
    reqs = [r for q in questions for r in requests(q, mode, tokenizer, scorer.cfg.n_positions)]
    scored = scorer.score(reqs, desc="cbt")
    ll = np.array([s.logp.sum() for s in scored]).reshape(len(questions), 10)
    picks = ll.argmax(axis=1)
    correct = [q.candidates[i] == q.answer for q, i in zip(questions, picks)]
    return {"acc": 100.0 * float(np.mean(correct)), "n": len(questions)}
