"""The published numbers (Radford et al. 2019, Tables 3 and 6) and the size matching."""
from gpt2_jax.config import GPT2Config
from gpt2_jax.evals import paper


def test_table3_rows_as_published():
    assert paper.TABLE3["117M"]["wikitext2"] == 29.41 and paper.TABLE3["117M"]["lambada_acc"] == 45.99
    assert paper.TABLE3["1542M"]["lambada_ppl"] == 8.63 and paper.TABLE3["1542M"]["cbt_ne"] == 89.05
    assert paper.TABLE3["762M"]["1bw"] == 44.575 and paper.TABLE3["345M"]["text8"] == 1.06
    assert paper.TABLE3["1542M"]["coqa"] == 55.0
    table3 = {c for c, (_, task, _, _) in paper.COLUMNS.items() if task in (None, "lambada", "cbt_cn", "cbt_ne",
                                                                            "wikitext2", "ptb", "enwik8", "text8",
                                                                            "wikitext103")}
    assert all(set(row) - {"coqa"} == table3 for row in paper.TABLE3.values())


def test_section_3_numbers_as_published():
    big = paper.published("1542M")
    assert big["wsc273"] == 70.70 and big["nq"] == 4.1
    assert (big["cnn_dm_r1"], big["cnn_dm_r2"], big["cnn_dm_rl"]) == (29.34, 8.27, 26.58)
    assert big["cnn_dm_ravg"] == round((29.34 + 8.27 + 26.58) / 3, 2)  # Table 4's R-AVG
    assert (big["wmt14_en_fr"], big["wmt14_fr_en"]) == (5.0, 11.5)
    small = paper.published("117M")
    assert "wsc273" not in small and "nq" not in small and "coqa" not in small  # 1.5B-only numbers
    assert small["cnn_dm_random3_r1"] == 28.78 and small["lambada_acc"] == 45.99  # random-3 needs no model
    assert set(paper.published("345M")) < set(paper.COLUMNS) | {"1bw"}
    assert paper.TABLE6["Dataset train"]["1bw"] == 13.19 and paper.TABLE6["WebText train"]["ptb"] == 0.88


def test_sizes_match_the_released_configs():
    for name, size in [("gpt2", "117M"), ("gpt2-medium", "345M"), ("gpt2-large", "762M"), ("gpt2-xl", "1542M")]:
        cfg = GPT2Config.from_name(name)
        assert paper.closest_size(cfg.n_layer, cfg.n_embd) == (size, True)
    assert paper.closest_size(2, 64) == ("117M", False)
