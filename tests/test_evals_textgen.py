"""Sentence splitting, few-shot prompts, and the metrics equal their packages called directly."""
import pytest

from gpt2_jax.evals import textgen
from gpt2_jax.tokenizer import Tokenizer


@pytest.mark.parametrize("text,sents", [
    ("Mr. Smith went to Washington. He said \"Hi!\" Then left... OK?",
     ["Mr. Smith went to Washington.", "He said \"Hi!\"", "Then left...", "OK?"]),
    ("J. K. Rowling wrote it. The U.S. economy grew 3.5 percent.\nA new line",
     ["J. K. Rowling wrote it.", "The U.S. economy grew 3.5 percent.", "A new line"]),
    ("  no end punctuation  ", ["no end punctuation"]),
    ("Le président M. Hollande a parlé. Il pleut.", ["Le président M. Hollande a parlé.", "Il pleut."]),
    ("", []),
])
def test_split_sentences(text, sents):
    assert textgen.split_sentences(text) == sents


def test_few_shot_prompt_drops_the_earliest_examples(data_dir):
    tok = Tokenizer.from_dir(data_dir / "gpt2_vocab")
    shots = [f"example number {i} = exemple {i}\n" for i in range(6)]
    full = textgen.few_shot_prompt(tok, shots, "query =", 1000)
    assert tok.decode(full) == "".join(shots) + "query ="
    cut = textgen.few_shot_prompt(tok, shots, "query =", len(full) - 3)
    assert tok.decode(cut) == "".join(shots[1:]) + "query ="
    assert len(textgen.few_shot_prompt(tok, shots, "query " * 50 + "=", 20)) == 20
    assert textgen.example_indices(0, 10, 3) == [1, 2, 3] and textgen.example_indices(2, 10, 3) == [0, 1, 3]
    assert textgen.example_indices(1, 2, 3) == [0]


def test_metrics_equal_the_packages():
    import sacrebleu
    from rouge_score import rouge_scorer
    preds = [["The park opens in spring.", "It has a lake."], ["A storm hit.", "Power was out."], []]
    refs = [["Council approves a park", "It will open in spring"], ["Storm hits the coast"], ["Nothing"]]
    got = textgen.rouge(preds, refs)
    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    for k in textgen.ROUGE_TYPES:
        want = 100 * sum(sc.score("\n".join(r), "\n".join(p))[k].fmeasure for p, r in zip(preds, refs)) / 3
        assert got[k] == pytest.approx(want, abs=1e-12)
    assert got["rougeLsum"] != got["rougeL"]  # summary-level LCS over the sentences
    hyps, ref = ["Le chat dort sur le canapé.", "Il fait beau."], ["Le chat dort sur le sofa.", "Il fait beau aujourd'hui."]
    assert textgen.bleu(hyps, ref) == sacrebleu.corpus_bleu(hyps, [ref]).score > 0
    assert textgen.exact_match("The Herman Melville!", ["herman  melville"])
    assert not textgen.exact_match("Melville", ["Herman Melville"])
