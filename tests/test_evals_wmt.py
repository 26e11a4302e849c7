"""WMT-14: prompts are byte-for-byte `english = french` lines then `english =`, the translation is
the first generated sentence, and BLEU equals sacrebleu called directly."""
import pytest

import evals_samples as S
from evals_reference import model
from gpt2_jax.evals import formats, wmt


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return S.write_wmt(tmp_path_factory.mktemp("wmt"))


def test_prompts_are_the_documented_format(root):
    tok = model()[3]
    pairs = formats.read_wmt14("en_fr", root / "newstest2014-fren-src.en.sgm")
    got = [tok.decode(p) for p in wmt.prompts(tok, pairs, 3, 1000)]
    assert got[0] == "".join(f"{en} = {fr}\n" for en, fr in pairs[1:4]) + f"{pairs[0][0]} ="
    assert got[4] == "".join(f"{en} = {fr}\n" for en, fr in pairs[:3]) + "Mr. Dupont bought a new car. ="
    assert "The weather is nice today. = Il fait beau aujourd'hui.\n" in got[0]
    fr_en = formats.read_wmt14("fr_en", root / "newstest2014-fren-src.fr.sgm")
    assert tok.decode(wmt.prompts(tok, fr_en, 1, 1000)[0]) == f"{fr_en[1][0]} = {fr_en[1][1]}\n{fr_en[0][0]} ="
    short = wmt.prompts(tok, pairs, 3, 40)  # examples dropped from the front to fit
    assert all(len(p) <= 40 for p in short) and tok.decode(short[0]).endswith(f"{pairs[0][0]} =")
    assert wmt.prompts(tok, pairs, 3, 1000, limit=2) == wmt.prompts(tok, pairs, 3, 1000)[:2]


def test_translation_is_the_first_generated_sentence():
    assert wmt.translation(" Le chat dort. Il rêve.\nThe dog = Le chien") == "Le chat dort."
    assert wmt.translation(" M. Dupont est là\nx") == "M. Dupont est là"
    assert wmt.translation("\n") == ""


def test_bleu_equals_sacrebleu(root):
    import sacrebleu
    _, _, scorer, tok, _ = model()
    for direction, src in (("en_fr", "src.en"), ("fr_en", "src.fr")):
        pairs = formats.read_wmt14(direction, root / f"newstest2014-fren-{src}.sgm")
        metrics, hyps = wmt.evaluate(scorer, tok, pairs, n_examples=2, limit=4)
        assert metrics["n"] == len(hyps) == 4
        assert metrics["bleu"] == sacrebleu.corpus_bleu(hyps, [[r for _, r in pairs[:4]]]).score
        outs = scorer.greedy(wmt.prompts(tok, pairs, 2, 128 - 64, limit=4), 64)
        assert hyps == [wmt.translation(tok.decode(o)) for o in outs]  # the first generated sentence
        assert all("\n" not in h for h in hyps) and any(hyps)
