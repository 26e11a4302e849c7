"""benchmarks.evals on a tiny model with tiny limits: its records have the promised structure and the
JAX and PyTorch sides give the same metrics (no timing is asserted)."""
import math

from benchmarks import evals

TASKS = ["lambada", "cbt_cn", "wikitext2", "wsc273", "coqa"]


def test_benchmark_structure_and_agreement(data_dir):
    res = evals.bench("tiny", TASKS, {"lambada": 3, "cbt_cn": 1, "wikitext2": 20, "wsc273": 4, "coqa": 2},
                      data_dir=data_dir, log=None)
    assert list(res["tasks"]) == TASKS
    for task, r in res["tasks"].items():
        assert r["agree"], (task, r["disagreement"])
        assert r["jax"]["metrics"]["n"] == r["torch"]["metrics"]["n"]
        for side in ("jax", "torch"):
            assert r[side]["forward_tokens"] > 0 and r[side]["seconds"] > 0
            assert {"scored_tokens_per_sec", "forward_tokens_per_sec", "padding_fraction"} <= set(r[side])
        assert r["projected_min"]["jax"] > 0 and r["projected_min"]["torch"] > 0 and r["full"] == evals.FULL[task]
    key = {"lambada": "ppl", "wikitext2": "ppl", "cbt_cn": "acc", "wsc273": "acc_full", "coqa": "f1"}
    for task, k in key.items():
        a, b = res["tasks"][task]["jax"]["metrics"][k], res["tasks"][task]["torch"]["metrics"][k]
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4), (task, a, b)
    cbt = res["tasks"]["cbt_cn"]
    assert cbt["forward_ratio"] > 2  # one context instead of ten (contexts cut to the tiny 128 here)
    assert res["tasks"]["wikitext2"]["forward_ratio"] == 1.0  # the same windows on both sides
    text = evals.table(res)
    assert all(f"| {t} |" in text for t in TASKS) and "total (tasks with data here)" in text
