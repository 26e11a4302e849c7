"""WMT-14 English<->French translation (GPT-2 paper §3.7: 5 BLEU En->Fr, 11.5 BLEU Fr->En at 1.5B).

The prompt is a context of example pairs in the format `english sentence = french sentence`, one
a line, then `source sentence =`; greedy decoding, and the first generated sentence (of the first
line) is the translation, scored with sacrebleu's corpus BLEU against newstest2014's reference.
Fr->En flips the pairs (`french sentence = english sentence`). The examples are the first
`n_examples` pairs of the test set other than the sentence itself (the paper does not say where
its examples came from); the earliest are dropped when the prompt would not fit. The same in
paper and harness mode.
"""
from __future__ import annotations

from typing import Any, Sequence

from gpt2_jax.evals import textgen
from gpt2_jax.evals.scoring import Scorer

N_EXAMPLES, MAX_NEW = 10, 128


def example(source: str, target: str) -> str:
    return f"{source} = {target}\n"


def query(source: str) -> str:
    return f"{source} ="


def prompts(tok, pairs: Sequence[tuple[str, str]], n_examples: int, budget: int,
            limit: int | None = None) -> list[list[int]]:
    """Prompt tokens for the first `limit` (default all) pairs (source, reference) of one direction."""
    out = []
    for i, (src, _) in enumerate(pairs[:limit]):
        shots = [example(*pairs[j]) for j in textgen.example_indices(i, len(pairs), n_examples)]
        out.append(textgen.few_shot_prompt(tok, shots, query(src), budget))
    return out


def translation(generated: str) -> str:
    """The first sentence of the first generated line."""
    first = textgen.first_sentences(generated.strip().split("\n")[0], 1)
    return first[0] if first else ""


def evaluate(scorer: Scorer, tok, pairs: Sequence[tuple[str, str]], mode: str = "paper",
             n_examples: int = N_EXAMPLES, max_new_tokens: int = MAX_NEW,
             limit: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """(metrics {bleu, n}, translations) of the first `limit` (default all) (source, reference)
    pairs; the examples come from all of them."""
    max_new = min(max_new_tokens, scorer.cfg.n_positions // 2)
    newline = tok.encode("\n")
    eos = newline[0] if len(newline) == 1 else None  # early exit only; the text is cut anyway
    outs = scorer.greedy(prompts(tok, pairs, n_examples, scorer.cfg.n_positions - max_new, limit), max_new, eos)
    hyps = [translation(tok.decode(o)) for o in outs]
    return {"bleu": textgen.bleu(hyps, [ref for _, ref in pairs[:limit]]), "n": len(hyps)}, hyps
