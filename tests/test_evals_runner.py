"""run_eval: every task end to end with the files it writes, checkpoint loading, and one clear
error per kind of bad input."""
import json

import numpy as np
import pytest

import evals_samples as S
from evals_reference import model
from gpt2_jax.errors import CheckpointError, DataError, InputError
from gpt2_jax.evals import lambada, readers
from gpt2_jax.evals.runner import TASKS, parse_tasks, run_eval


def _files(data_dir, tmp_path):
    rng = np.random.default_rng(0)
    words = ["the", "anarchism", "one", "nine", "originated", "as", "a", "term"]
    (tmp_path / "text8").write_bytes(" ".join(rng.choice(words, 20000)).encode())  # 5% = ~6 KB
    (tmp_path / "enwik8").write_bytes("\n".join("<text>" + " ".join(rng.choice(words, 9)) + " café</text>"
                                                for _ in range(2000)).encode())
    wmt = S.write_wmt(tmp_path / "wmt")
    return {"cnn_dm": S.write_cnn_dm(tmp_path / "cnn_dm"), "nq": S.write_nq(tmp_path / "nq")[0],
            "wmt14_en_fr": wmt / "newstest2014-fren-src.en.sgm", "wmt14_fr_en": wmt / "newstest2014-fren-src.fr.sgm",
            "cbt_cn": data_dir / "cbt/samples/cbtest_CN_valid_2000ex.excerpt1.txt",
            "cbt_ne": data_dir / "cbt/samples/cbtest_NE_valid_2000ex.excerpt1.txt",
            "coqa": data_dir / "coqa/samples/coqa-dev-v1.0.excerpt1story.json",
            "enwik8": tmp_path / "enwik8", "text8": tmp_path / "text8"}


def test_all_tasks_end_to_end(data_dir, tmp_path):
    params, cfg, *_ , tok, _ = model()
    out = tmp_path / "out" / "results.json"
    res = run_eval((params, cfg), ",".join(TASKS), "paper", data_dir, out, limit=4,
                   files=_files(data_dir, tmp_path), stride=128, coqa_max_new_tokens=8, log=None)
    assert list(res) == list(TASKS)
    assert json.loads(out.read_text()) == res  # results.json maps each task to its metrics
    for task, keys in {"lambada": {"acc", "ppl", "n"}, "cbt_cn": {"acc", "n"}, "wikitext2": {"ppl", "n"},
                       "ptb": {"ppl", "n"}, "coqa": {"f1", "em", "n"}, "enwik8": {"bpb", "n"},
                       "text8": {"bpb", "n"}, "wsc273": {"acc", "acc_full", "acc_partial", "n"},
                       "cnn_dm": {"rouge1", "rouge2", "rougeL", "rougeLsum", "random3_rouge1", "n"},
                       "wmt14_en_fr": {"bleu", "n"}, "wmt14_fr_en": {"bleu", "n"}, "nq": {"em", "n"}}.items():
        assert keys <= set(res[task]), task
    for task, m in res.items():  # every task reports its throughput
        assert {"scored_tokens_per_sec", "forward_tokens_per_sec", "forward_tokens", "padding_fraction"} <= set(m)
        assert m["forward_tokens"] > 0 and m["forward_tokens_per_sec"] > 0, task
    assert res["lambada"]["n"] == 4 and res["coqa"]["n"] == 4 and res["cbt_ne"]["n"] == 1
    assert res["enwik8"]["n"] == 4000 and res["text8"]["n"] == 4000  # limit 4 -> first 4 KB
    assert res["wsc273"]["n"] == res["wmt14_fr_en"]["n"] == res["nq"]["n"] == 4
    assert res["cnn_dm"]["n"] == 3  # the 4 urls: one story has no article text
    assert len(json.loads((out.parent / "results_cnn_dm_predictions.json").read_text())) == 3
    assert len(json.loads((out.parent / "results_wmt14_en_fr_predictions.json").read_text())) == 4
    first4 = readers.read_lambada(data_dir=data_dir)[:4]
    assert res["lambada"]["ppl"] == pytest.approx(lambada.evaluate(model()[2], tok, first4, "paper")["ppl"])
    md = out.with_suffix(".md").read_text()
    assert "| WikiText2 (PPL) |" in md and "| 29.41 |" in md and "117M" in md
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    preds = json.loads((out.parent / "results_coqa_predictions.json").read_text())
    assert [(p["id"], p["turn_id"]) for p in preds] == [("3dr23u6we5exclen4th8uq9rb42tel", t) for t in (1, 2, 3, 4)]


def test_harness_mode_and_hf_checkpoint_dir(data_dir, tmp_path):
    from gpt2_jax.interop import save_hf
    params, cfg, *_ = model()
    save_hf(params, cfg, tmp_path / "ckpt")
    a = run_eval((params, cfg), ["ptb", "lambada"], "harness", data_dir, limit=3, log=None)
    b = run_eval(str(tmp_path / "ckpt"), ["ptb", "lambada"], "harness", data_dir, limit=3, log=None)
    assert set(a["ptb"]) >= {"word_ppl", "byte_ppl", "bpb", "n"} and set(a["lambada"]) >= {"acc", "ppl"}
    for t in a:
        assert a[t]["ppl" if t == "lambada" else "word_ppl"] == pytest.approx(
            b[t]["ppl" if t == "lambada" else "word_ppl"], rel=1e-5)


def test_bad_inputs_give_one_clear_error(data_dir, tmp_path):
    params, cfg, *_ = model()
    with pytest.raises(InputError, match=r"unknown eval task\(s\) \['lambda'\]; choose from lambada, cbt_cn"):
        run_eval((params, cfg), "lambda,ptb", data_dir=data_dir)
    with pytest.raises(InputError, match="unknown eval mode 'papers'"):
        run_eval((params, cfg), "ptb", "papers", data_dir)
    with pytest.raises(DataError, match=r"data file not found: .*empty/ptb/ptb.test.txt.*wojzaremba"):
        run_eval("no/such/checkpoint", "ptb", data_dir=tmp_path / "empty")  # data is checked first
    bad = tmp_path / "lambada_test.jsonl"
    bad.write_text('{"text": "one two"}\n{"text": "three four"\n')
    with pytest.raises(DataError, match=r"lambada_test.jsonl:2: malformed JSON"):
        run_eval((params, cfg), "lambada", data_dir=data_dir, files={"lambada": bad}, log=None)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "weights.txt").write_text("x")
    with pytest.raises(CheckpointError, match="is neither an HF dir"):
        run_eval(str(tmp_path / "junk"), "ptb", data_dir=data_dir)
    with pytest.raises(InputError, match="limit=0 must be a positive integer"):
        run_eval((params, cfg), "ptb", data_dir=data_dir, limit=0)
    assert parse_tasks(None) == list(TASKS) and parse_tasks(" ptb, lambada,ptb") == ["ptb", "lambada"]


def test_results_table_chart_and_predictions_go_to_object_storage(data_dir, tiny_cfg, fake_gcs, tmp_path,
                                                                  monkeypatch):
    import jax

    from gpt2_jax.model import init_params
    monkeypatch.chdir(tmp_path)
    params = init_params(tiny_cfg, jax.random.key(0))
    res = run_eval((params, tiny_cfg), ["lambada", "coqa"], "paper", data_dir, "gs://bucket/run/eval/results.json",
                   limit=2, files={"coqa": data_dir / "coqa/samples/coqa-dev-v1.0.excerpt1story.json"},
                   coqa_max_new_tokens=4, log=None, progress=False)
    out = fake_gcs / "bucket" / "run" / "eval"
    assert json.loads((out / "results.json").read_text()) == res
    assert "Zero-shot evaluation (paper mode)" in (out / "results.md").read_text()
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(json.loads((out / "results_coqa_predictions.json").read_text())) == 2
    assert not (tmp_path / "gs:").exists()
