"""Winograd Schema Challenge, WSC273 (GPT-2 paper §3.4: 70.70% for 1.5B), with the protocol of
Trinh & Le (2018) that the paper follows: substitute each candidate for the pronoun and compare

  full scoring    = log p(the whole substituted sentence), and
  partial scoring = log p(the words after the substitution | the sentence up to and including it);

the candidate with the higher score is the answer. Both are reported (`acc_full`, `acc_partial`);
`acc` is the partial one, the scoring of the paper's number. Every sentence is scored as a
document: conditioned on end-of-text, the same in paper and harness mode.

The two substituted sentences of a schema share their first tokens (the text before the
candidate), so they go to the Scorer as two requests with that common context, which it packs
around one copy. Both scores come out of the same per-token log-probs: the partial score sums the
tokens after the option's. The shared part's own log-prob is the same for both candidates, so the
comparison leaves it out; `score(..., whole=True)` adds it (one more request) for the sentences'
actual log-probabilities.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from gpt2_jax.errors import InputError
from gpt2_jax.evals.formats import WSCSchema
from gpt2_jax.evals.scoring import Scorer

_NO_SPACE = tuple(".,;:!?")


def sentence(option: str, continuation: str) -> str:
    """The substituted sentence: the option, then the rest after a space (none before punctuation)."""
    return option + ("" if continuation.startswith(_NO_SPACE) else " ") + continuation


def _tokens(schema: WSCSchema, tok) -> tuple[list[list[int]], list[int], int]:
    """Each candidate's sentence tokens, where its partial part starts (after the option's tokens,
    as lm-eval's encode_pair splits), and how many leading tokens both sentences share."""
    toks = [tok.encode(sentence(o, schema.continuation)) for o in schema.options]
    starts = [len(tok.encode(o)) for o in schema.options]
    common = 0
    while common < min(starts) and toks[0][common] == toks[1][common]:
        common += 1
    return toks, starts, common


def requests(schemas: Sequence[WSCSchema], tok, max_len: int,
             whole: bool = True) -> tuple[list[tuple[list[int], int]], list[tuple]]:
    """Scorer requests of every schema, and per schema (prefix request or None, candidate request
    ids, common prefix length, partial starts); `whole`: also score the common prefix."""
    eot = tok.eot_id
    reqs, where = [], []
    for i, s in enumerate(schemas):
        toks, starts, common = _tokens(s, tok)
        longest = max(map(len, toks))
        if longest > max_len:
            raise InputError(f"WSC schema {i} (line {s.line}) is {longest} tokens, more than the model's context of "
                             f"{max_len}; full scoring needs the whole sentence.")
        pre = None
        if common and whole:
            pre = len(reqs)
            reqs.append(([eot] + toks[0][:common], common))
        cands = []
        for t in toks:
            cands.append(len(reqs))
            reqs.append(([eot] + t, len(t) - common))
        where.append((pre, cands, common, starts))
    return reqs, where


def score(scorer: Scorer, tok, schemas: Sequence[WSCSchema], whole: bool = True) -> np.ndarray:
    """[n, 2 candidates, 2] log-probabilities: (full, partial) of each substituted sentence; without
    `whole`, the full scores leave out the log-prob of the tokens both sentences share."""
    reqs, where = requests(schemas, tok, scorer.cfg.n_positions, whole)
    scored = scorer.score(reqs, desc="wsc273")
    out = np.zeros((len(schemas), 2, 2))
    for i, (pre, cands, common, starts) in enumerate(where):
        prefix = float(scored[pre].logp.sum()) if pre is not None else 0.0
        for k, (r, start) in enumerate(zip(cands, starts)):
            lp = scored[r].logp
            out[i, k] = prefix + float(lp.sum()), float(lp[start - common:].sum())
    return out


def evaluate(scorer: Scorer, tok, schemas: Sequence[WSCSchema], mode: str = "paper") -> dict[str, Any]:
    """Accuracies (percent) of full and partial scoring; `acc` = partial (both modes)."""
    lp = score(scorer, tok, schemas, whole=False)  # the shared prefix cannot change a comparison
    gold = np.array([s.gold for s in schemas])
    full = 100.0 * float(np.mean(lp[:, :, 0].argmax(axis=1) == gold))
    partial = 100.0 * float(np.mean(lp[:, :, 1].argmax(axis=1) == gold))
    return {"acc": partial, "acc_partial": partial, "acc_full": full, "n": len(schemas)}
