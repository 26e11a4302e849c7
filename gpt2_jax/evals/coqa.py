"""CoQA (GPT-2 paper §3.5): answer each question by greedy decoding, conditioned on the story, the
conversation so far (gold answers) and a final `A:`.

`paper`: prompt `story\\n\\nQ: q1\\nA: a1\\n\\n ... Q: qi\\nA:`, greedy until a newline (at most
`max_new_tokens`, default 32); the answer is the stripped first line. Scored with the official
script's F1 / EM (leave-one-out over references; domain, in/out-of-domain and overall breakdown).
`harness` (lm-eval-harness `coqa`): prompt `story\\n\\nQ: q1\\n\\nA: a1\\n\\n ... Q: qi\\n\\nA:`,
greedy until `\\nQ:` (at most `max_new_tokens`, harness default 256), answer =
generation.strip().split("\\n")[0], references de-duplicated, F1 / EM averaged over turns.
Prompts longer than the context keep their end. Scores in percent.
"""
from __future__ import annotations

from typing import Any

from gpt2_jax.evals import coqa_metric
from gpt2_jax.evals.readers import CoQAStory
from gpt2_jax.evals.scoring import Scorer

DEFAULT_MAX_NEW = {"paper": 32, "harness": 256}


def prompt(story: CoQAStory, turn: int, mode: str) -> str:
    """The prompt for question `turn` (0-based) of `story`."""
    qa_sep = "\n" if mode == "paper" else "\n\n"
    history = "".join(f"Q: {story.questions[i]}{qa_sep}A: {story.references[i][0]}\n\n" for i in range(turn))
    return f"{story.story}\n\n{history}Q: {story.questions[turn]}{qa_sep}A:"


def extract_answer(generated: str, mode: str) -> str:
    if mode == "paper":
        return generated.split("\n")[0].strip()
    return generated.split("\nQ:")[0].strip().split("\n")[0]


def greedy_answers(scorer: Scorer, tokenizer, prompts: list[str], mode: str, max_new_tokens: int) -> list[str]:
    """Greedy continuations of `prompts` (left-truncated to fit), cut to the answer."""
    newline = tokenizer.encode("\n")
    eos = newline[0] if mode == "paper" and len(newline) == 1 else None  # early exit only
    outs = scorer.greedy([tokenizer.encode(p) for p in prompts], max_new_tokens, eos)
    return [extract_answer(tokenizer.decode(out), mode) for out in outs]


def evaluate(scorer: Scorer, tokenizer, stories: list[CoQAStory], mode: str,
             max_new_tokens: int | None = None) -> tuple[dict[str, Any], dict]:
    """(metrics, predictions {(story id, turn id): answer}) for `stories`."""
    max_new_tokens = max_new_tokens or DEFAULT_MAX_NEW[mode]
    keys = [(s, t) for s in stories for t in range(len(s.questions))]
    answers = greedy_answers(scorer, tokenizer, [prompt(s, t, mode) for s, t in keys], mode, max_new_tokens)
    preds = {(s.id, s.turn_ids[t]): a for (s, t), a in zip(keys, answers)}
    if mode == "paper":
        scores = coqa_metric.evaluate(stories, preds)
        metrics = {"f1": scores["overall"]["f1"], "em": scores["overall"]["em"], "n": len(keys),
                   "in_domain_f1": scores["in_domain"]["f1"], "out_domain_f1": scores["out_domain"]["f1"],
                   "domains": {k: v for k, v in scores.items() if v["turns"]}}
    else:
        per_turn = [coqa_metric.harness_turn_score(s.references[t], a) for (s, t), a in zip(keys, answers)]
        metrics = {"f1": 100.0 * sum(x["f1"] for x in per_turn) / max(1, len(keys)),
                   "em": 100.0 * sum(x["em"] for x in per_turn) / max(1, len(keys)), "n": len(keys)}
    return metrics, preds
