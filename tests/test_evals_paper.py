"""The published numbers (Radford et al. 2019, Tables 3 and 6) and the size matching."""
from gpt2_jax.config import GPT2Config
from gpt2_jax.evals import paper


def test_table3_rows_as_published():
    assert paper.TABLE3["117M"]["wikitext2"] == 29.41 and paper.TABLE3["117M"]["lambada_acc"] == 45.99
    assert paper.TABLE3["1542M"]["lambada_ppl"] == 8.63 and paper.TABLE3["1542M"]["cbt_ne"] == 89.05
    assert paper.TABLE3["762M"]["1bw"] == 44.575 and paper.TABLE3["345M"]["text8"] == 1.06
    assert paper.TABLE3["1542M"]["coqa"] == 55.0
    cols = set(paper.COLUMNS)
    assert all(set(row) - {"coqa"} == cols - {"coqa"} for row in paper.TABLE3.values())
    assert paper.TABLE6["Dataset train"]["1bw"] == 13.19 and paper.TABLE6["WebText train"]["ptb"] == 0.88


def test_sizes_match_the_released_configs():
    for name, size in [("gpt2", "117M"), ("gpt2-medium", "345M"), ("gpt2-large", "762M"), ("gpt2-xl", "1542M")]:
        cfg = GPT2Config.from_name(name)
        assert paper.closest_size(cfg.n_layer, cfg.n_embd) == (size, True)
    assert paper.closest_size(2, 64) == ("117M", False)
