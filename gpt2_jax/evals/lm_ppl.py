"""Language-modelling benchmarks: WikiText-2, WikiText-103, PTB (perplexity) and enwik8, text8
(bits per byte / character).

`paper` (GPT-2 §3.1): the whole test file is one stream, de-tokenized invertibly (WikiText, PTB),
BPE-encoded and scored once per token with a sliding window (`context` tokens, `stride` new tokens
per window, the first token conditioned on <|endoftext|>). The total log-likelihood is normalised
by the *original* dataset's units: whitespace tokens plus one <eos> per line for WikiText and PTB
(WT2 test: 241211 + 4358 = 245569), bytes of the test split for enwik8 and characters for text8.

`harness` (lm-eval-harness `wikitext`, loglikelihood_rolling): documents scored independently with
disjoint `max_length` windows (stride = context; each window's first prediction sees one token of
the previous window), then word_perplexity = exp(-ΣLL / Σwords), byte_perplexity = exp(-ΣLL /
Σbytes), bits_per_byte = -ΣLL / Σbytes / ln 2, where words (`len(re.split(r"\\s+", doc))`) and bytes
are counted on the original documents. WikiText documents are the Wikipedia pages of
EleutherAI/wikitext_document_level, de-tokenized with the harness's `wikitext_detokenizer`.
WikiText-103 uses the same recipe on its tokens file; PTB and enwik8/text8 (no upstream task) are
one document each with no de-tokenizer.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

from gpt2_jax.evals import detokenizers
from gpt2_jax.evals.scoring import Scorer, rolling_requests, total_logprob

PAPER_DETOK: dict[str, Callable[[str], str]] = {
    "wikitext2": detokenizers.wikitext_detokenize,
    "wikitext103": detokenizers.wikitext_detokenize,
    "ptb": detokenizers.ptb_detokenize,
    "enwik8": detokenizers.identity,
    "text8": detokenizers.identity,
}
CHAR_TASKS = ("enwik8", "text8")


def original_token_count(text: str) -> int:
    """Tokens of a word-level benchmark file as its models count them: words plus one <eos> a line."""
    return len(text.split()) + text.count("\n") + (0 if text.endswith("\n") or not text else 1)


def wikitext_documents(text: str) -> list[str]:
    """The pages of a WikiText file, split as EleutherAI/wikitext_document_level does: a new page
    starts at each top-level heading line ` = Title = `; lines are re-joined with newlines."""
    pages, lines = [], []
    for line in text.split("\n"):
        rline = line.replace("= = =", "===").replace("= =", "==").strip()
        if rline.startswith("= ") and rline.strip().endswith(" ="):
            page = "\n".join(lines)
            if page.strip():
                pages.append(page)
            lines = []
        lines.append(line)
    pages.append("\n".join(lines))
    return pages


def harness_documents(task: str, text: str) -> list[str]:
    return wikitext_documents(text) if task in ("wikitext2", "wikitext103") else [text]


def paper_metrics(scorer: Scorer, tokenizer, task: str, text: str, context: int | None = None,
                  stride: int | None = None, n_bytes: int | None = None) -> dict[str, Any]:
    """GPT-2-paper metrics of one test stream (see the module docstring). `n_bytes`: the size of
    the original byte split for enwik8/text8 (default: the UTF-8 size of `text`)."""
    context = context or scorer.cfg.n_positions
    stride = stride or max(1, context // 2)
    tokens = tokenizer.encode(PAPER_DETOK[task](text))
    ll = total_logprob(scorer.score(rolling_requests(tokens, tokenizer.eot_id, context, stride), desc=task))
    if task in CHAR_TASKS:
        n_bytes = n_bytes or len(text.encode("utf-8"))
        return {"bpb": -ll / n_bytes / math.log(2), "n": n_bytes, "bpe_tokens": len(tokens)}
    n = original_token_count(text)
    return {"ppl": math.exp(-ll / n), "token_ppl": math.exp(-ll / len(tokens)), "n": n,
            "bpe_tokens": len(tokens)}


def harness_metrics(scorer: Scorer, tokenizer, task: str, text: str,
                    context: int | None = None) -> dict[str, Any]:
    """lm-eval-harness rolling-loglikelihood metrics over the task's documents."""
    context = context or scorer.cfg.n_positions
    docs = harness_documents(task, text)
    detok = detokenizers.harness_wikitext_detokenize if task.startswith("wikitext") else detokenizers.identity
    reqs = [r for doc in docs
            for r in rolling_requests(tokenizer.encode(detok(doc)), tokenizer.eot_id, context, context)]
    ll = total_logprob(scorer.score(reqs, desc=task))
    words = sum(len(re.split(r"\s+", doc)) for doc in docs)
    n_bytes = sum(len(doc.encode("utf-8")) for doc in docs)
    return {"word_ppl": math.exp(-ll / words), "byte_ppl": math.exp(-ll / n_bytes),
            "bpb": -ll / n_bytes / math.log(2), "n": len(docs), "words": words, "bytes": n_bytes}


def evaluate(scorer: Scorer, tokenizer, task: str, text: str, mode: str, context: int | None = None,
             stride: int | None = None, n_bytes: int | None = None) -> dict[str, Any]:
    if mode == "paper":
        return paper_metrics(scorer, tokenizer, task, text, context, stride, n_bytes)
    return harness_metrics(scorer, tokenizer, task, text, context)
