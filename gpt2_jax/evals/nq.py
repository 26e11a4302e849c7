"""Natural Questions (GPT-2 paper §3.8: 4.1% exact match at 1.5B).

The prompt is a context of example question-answer pairs, `Q: question\\nA: answer\\n\\n` each,
then `Q: question\\nA:`; greedy decoding, the answer is the first generated line, stripped, and
is correct when it equals one of the short answers after SQuAD normalisation. The examples are
the first `n_examples` questions other than the question itself (with their first answer); the
earliest are dropped when the prompt would not fit. The same in paper and harness mode.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from gpt2_jax.evals import textgen
from gpt2_jax.evals.formats import NQQuestion
from gpt2_jax.evals.scoring import Scorer

N_EXAMPLES, MAX_NEW = 8, 32


def example(q: NQQuestion) -> str:
    return f"Q: {q.question}\nA: {q.answers[0]}\n\n"


def query(q: NQQuestion) -> str:
    return f"Q: {q.question}\nA:"


def prompts(tok, questions: Sequence[NQQuestion], n_examples: int, budget: int,
            limit: int | None = None) -> list[list[int]]:
    """Prompt tokens for the first `limit` (default all) questions."""
    out = []
    for i, q in enumerate(questions[:limit]):
        shots = [example(questions[j]) for j in textgen.example_indices(i, len(questions), n_examples)]
        out.append(textgen.few_shot_prompt(tok, shots, query(q), budget))
    return out


def answer(generated: str) -> str:
    return generated.strip().split("\n")[0].strip()


def evaluate(scorer: Scorer, tok, questions: Sequence[NQQuestion], mode: str = "paper",
             n_examples: int = N_EXAMPLES, max_new_tokens: int = MAX_NEW,
             limit: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """(metrics {em (percent), n}, answers) of the first `limit` (default all) questions; the
    examples come from all of them."""
    max_new = min(max_new_tokens, scorer.cfg.n_positions // 2)
    newline = tok.encode("\n")
    eos = newline[0] if len(newline) == 1 else None
    outs = scorer.greedy(prompts(tok, questions, n_examples, scorer.cfg.n_positions - max_new, limit), max_new, eos)
    answers = [answer(tok.decode(o)) for o in outs]
    em = [textgen.exact_match(a, q.answers) for a, q in zip(answers, questions)]
    return {"em": 100.0 * float(np.mean(em)) if em else 0.0, "n": len(answers)}, answers
