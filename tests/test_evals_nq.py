"""Natural Questions: prompts are byte-for-byte `Q: ...\nA: ...` pairs then `Q: ...\nA:`, the answer
is the first generated line, and exact match equals the official SQuAD v1.1 script's."""
import re
import string

import evals_samples as S
from evals_reference import model
from gpt2_jax.evals import formats, nq


def squad_normalize(s):  # SQuAD v1.1 evaluate-v1.1.py, verbatim in substance
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_em(prediction, ground_truths):
    return max(squad_normalize(prediction) == squad_normalize(g) for g in ground_truths)


def test_prompts_are_the_documented_format(tmp_path):
    tok = model()[3]
    qs = formats.read_nq(S.write_nq(tmp_path)[0])
    got = tok.decode(nq.prompts(tok, qs, 2, 1000)[1])
    assert got == ("Q: who wrote the novel moby dick\nA: Herman Melville\n\n"
                   "Q: when did the first man land on the moon\nA: 1969\n\n"
                   "Q: what is the capital of france\nA:")
    assert nq.answer(" Paris\nQ: next") == "Paris" and nq.answer("\n") == ""


def test_exact_match_equals_the_squad_script(tmp_path):
    _, _, scorer, tok, _ = model()
    qs = formats.read_nq(S.write_nq(tmp_path)[0])
    metrics, answers = nq.evaluate(scorer, tok, qs, n_examples=2)
    assert metrics["n"] == len(answers) == 4
    assert metrics["em"] == 100 * sum(squad_em(a, q.answers) for a, q in zip(answers, qs)) / 4
    cases = [("The Herman Melville.", ["Herman Melville"]), ("july 20 1969", ["1969", "July 20, 1969"]),
             ("Paris, France", ["Paris"]), ("an eight", ["8", "eight"])]
    from gpt2_jax.evals import textgen
    assert [textgen.exact_match(p, g) for p, g in cases] == [squad_em(p, g) for p, g in cases] == [True, True, False, True]
    outs = scorer.greedy(nq.prompts(tok, qs, 2, 128 - 32), 32)
    assert answers == [nq.answer(tok.decode(o)) for o in outs] and any(answers)  # the first generated line
