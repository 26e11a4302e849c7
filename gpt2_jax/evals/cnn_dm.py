"""CNN/DailyMail summarization (GPT-2 paper §3.6, Table 4): the article, then "\\nTL;DR:", then
100 tokens sampled with top-k = 2; the first 3 generated sentences are the summary, scored with
ROUGE-1/2/L F1 against the highlights (rouge-score, stemmed; R-L is summary-level ROUGE-Lsum over
the sentences, plain ROUGE-L is reported too). Also the paper's baseline: 3 random sentences of
the article (seeded). The same in paper and harness mode.

An article longer than the context keeps its beginning: the prompt is the article's first tokens
then the "\\nTL;DR:" hint, within n_positions - 100 tokens.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from gpt2_jax.evals import textgen
from gpt2_jax.evals.formats import Story
from gpt2_jax.evals.scoring import Scorer

HINT = "\nTL;DR:"
MAX_NEW, TOP_K, N_SENTENCES = 100, 2, 3


def prompt_text(article: str) -> str:
    return article + HINT


def prompt_tokens(tok, article: str, budget: int) -> list[int]:
    """Tokens of article + HINT; over `budget`, the article's first tokens then the hint's."""
    ids = tok.encode(prompt_text(article))
    if len(ids) <= budget:
        return ids
    hint = tok.encode(HINT)
    return tok.encode(article)[:budget - len(hint)] + hint


def sample(scorer: Scorer, prompts: Sequence[Sequence[int]], max_new_tokens: int, top_k: int, seed: int,
           eos_id: int | None) -> list[list[int]]:
    """Top-k samples (temperature 1) continuing each prompt, by generate's decoder on the
    scorer's layout; the continuations stop after eos_id (not included)."""
    from gpt2_jax.generate import generate
    t0 = time.perf_counter()
    outs = generate(scorer.params, scorer.cfg, [list(p) for p in prompts], max_new_tokens=max_new_tokens,
                    temperature=1.0, top_k=top_k, rng=seed, eos_id=eos_id, layout=scorer.layout,
                    batch_size=scorer.batch_size)
    scorer.stats.forward_tokens += sum(len(o) for o in outs)
    scorer.stats.seconds += time.perf_counter() - t0
    news = [o[len(p):] for p, o in zip(prompts, outs)]
    return [n[:-1] if n and n[-1] == eos_id else n for n in news]


def random3(article: str, rng: np.random.Generator) -> list[str]:
    """3 random sentences of the article, in article order."""
    sents = textgen.split_sentences(article)
    pick = sorted(rng.choice(len(sents), size=min(N_SENTENCES, len(sents)), replace=False)) if sents else []
    return [sents[i] for i in pick]


def evaluate(scorer: Scorer, tok, stories: Sequence[Story], mode: str = "paper", max_new_tokens: int = MAX_NEW,
             top_k: int = TOP_K, seed: int = 0) -> tuple[dict[str, Any], list[dict]]:
    """(metrics, per-story predictions): ROUGE F1 (percent) of the TL;DR summaries and of the
    random-3 baseline."""
    max_new = min(max_new_tokens, scorer.cfg.n_positions // 2)
    prompts = [prompt_tokens(tok, s.article, scorer.cfg.n_positions - max_new) for s in stories]
    outs = sample(scorer, prompts, max_new, top_k, seed, tok.eot_id)
    summaries = [textgen.first_sentences(tok.decode(o), N_SENTENCES) for o in outs]
    refs = [list(s.highlights) for s in stories]
    rng = np.random.default_rng(seed)
    baseline = [random3(s.article, rng) for s in stories]
    ours, base = textgen.rouge(summaries, refs), textgen.rouge(baseline, refs)
    metrics: dict[str, Any] = {k: ours[k] for k in textgen.ROUGE_TYPES}
    metrics["r_avg"] = (ours["rouge1"] + ours["rouge2"] + ours["rougeLsum"]) / 3
    metrics.update({f"random3_{k}": base[k] for k in textgen.ROUGE_TYPES})
    metrics["random3_r_avg"] = (base["rouge1"] + base["rouge2"] + base["rougeLsum"]) / 3
    metrics["n"] = len(stories)
    preds = [{"id": s.id, "summary": "\n".join(p), "random3": "\n".join(b)}
             for s, p, b in zip(stories, summaries, baseline)]
    return metrics, preds
