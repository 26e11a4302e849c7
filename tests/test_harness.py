"""The lm-eval backend: on the same small HF weights, offline from local files, simple_evaluate with
the gpt2_jax model equals lm-eval's own `hf` model (lambada_openai, wikitext, arc_easy, a
generate_until task, direct requests); shared-prefix scoring equals whole-request scoring; bad
input gives one clear error on every path (library, `gpt2-jax eval --harness-tasks`, the CLI)."""
import json
import os
import shutil

for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_k] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from evals_reference import DATA, model  # noqa: E402
from gpt2_jax import harness  # noqa: E402
from gpt2_jax.errors import DataError, InputError  # noqa: E402

import lm_eval  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

REL = 1e-4
ARC = [
    ("Which of these is a source of light?", ["a rock", "the Sun", "a shadow", "a pillow"], 1),
    ("What do plants need to make food?", ["sunlight", "sand", "plastic", "music"], 0),
    ("Which state of matter has a fixed shape?", ["gas", "liquid", "solid", "steam"], 2),
    ("What force pulls objects toward Earth?", ["magnetism", "friction", "wind", "gravity"], 3),
    ("Which animal is a mammal?", ["shark", "frog", "whale", "lizard"], 2),
    ("Water freezes at what temperature in Celsius?", ["0 degrees", "50 degrees", "100 degrees"], 0),
]
GEN_TASK = """\
task: lambada_gen_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {lambada}
output_type: generate_until
test_split: test
doc_to_text: "{{{{text.split(' ')[:-1]|join(' ')}}}}"
doc_to_target: "{{{{' '+text.split(' ')[-1]}}}}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 16
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
# A multiple_choice task on real passages: the final word against two other words of the passage,
# each choice a loglikelihood request with the passage as its shared context.
CHOICE_TASK = """\
task: lambada_choice_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {lambada}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{text.split(' ')[:-1]|join(' ')}}}}"
doc_to_choice: "{{{{[text.split(' ')[-1], text.split(' ')[0], text.split(' ')[2]]}}}}"
doc_to_target: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The HF dir of the shared tiny weights, local task YAMLs, one TaskManager and both models."""
    import lm_eval.tasks
    import transformers
    from lm_eval.models.huggingface import HFLM

    from gpt2_jax.interop import save_hf

    root = tmp_path_factory.mktemp("harness")
    params, cfg, *_ = model()
    ckpt = root / "hf"
    save_hf(params, cfg, ckpt)
    vocab = root / "vocab"
    vocab.mkdir()
    shutil.copy(f"{DATA}/gpt2_vocab/encoder.json", vocab / "vocab.json")
    shutil.copy(f"{DATA}/gpt2_vocab/vocab.bpe", vocab / "merges.txt")
    transformers.GPT2Tokenizer.from_pretrained(vocab).save_pretrained(ckpt)  # (not vocab_file=: empty in v5)
    tasks = root / "tasks"
    harness.offline_tasks(tasks, DATA)
    up = os.path.dirname(lm_eval.tasks.__file__)
    _jsonl(tasks / "arc.jsonl", [{"id": f"q{i}", "question": q, "answerKey": "ABCD"[a],
                                   "choices": {"text": ch, "label": list("ABCD"[:len(ch)])}}
                                  for i, (q, ch, a) in enumerate(ARC)])
    (tasks / "arc_easy.yaml").write_text(f"include: {up}/arc/arc_easy.yaml\ndataset_path: json\ndataset_name: null\n"
                                         f"dataset_kwargs:\n  data_files:\n    test: {tasks / 'arc.jsonl'}\n"
                                         "training_split: null\nvalidation_split: null\n")
    (tasks / "lambada_gen_local.yaml").write_text(GEN_TASK.format(lambada=f"{DATA}/lambada/lambada_test.jsonl"))
    (tasks / "lambada_choice_local.yaml").write_text(CHOICE_TASK.format(lambada=f"{DATA}/lambada/lambada_test.jsonl"))
    # logits_cache=False: with its cache, HFLM scores a request whose ctx + cont[:-1] equals a longer
    # one's by the representative's first len(cont) positions instead of its last (lm-eval 0.4.13,
    # huggingface.py _loglikelihood_tokens); gpt2_jax gives the uncached, correct value.
    hf = HFLM(pretrained=str(ckpt), backend="causal", device="cpu", batch_size=4, dtype="float32",
              logits_cache=False)
    ours = harness.GPT2JaxLM(checkpoint=str(ckpt), batch_size=4)
    tm = harness.task_manager(tasks, defaults=False)
    return {"ckpt": ckpt, "tasks": tasks, "hf": hf, "ours": ours, "tm": tm}


@pytest.fixture(scope="module")
def bad_tasks(env, tmp_path_factory):
    """Task YAMLs whose data is on the Hub (offline here), missing, or longer than the context."""
    tmp_path = tmp_path_factory.mktemp("bad")
    bad = tmp_path / "tasks"
    bad.mkdir()
    (bad / "hub.yaml").write_text("include: " + str(env["tasks"] / "lambada_openai.yaml") +
                                  "\ntask: lambada_hub\ndataset_path: EleutherAI/lambada_openai\n"
                                  "dataset_name: default\ndataset_kwargs: null\n")
    (bad / "gone.yaml").write_text("include: " + str(env["tasks"] / "lambada_openai.yaml") + "\ntask: lambada_gone\n"
                                   f"dataset_kwargs:\n  data_files:\n    test: {tmp_path / 'missing.jsonl'}\n")
    _jsonl(tmp_path / "long.jsonl", [{"text": "x", "target": " word" * 200}])
    (bad / "long.yaml").write_text(f"task: long_target\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                   f"    test: {tmp_path / 'long.jsonl'}\n"
                                   "output_type: loglikelihood\ntest_split: test\n"
                                   "doc_to_text: '{{text}}'\ndoc_to_target: '{{target}}'\nmetric_list:\n"
                                   "  - metric: perplexity\n    aggregation: perplexity\n    higher_is_better: false\n")
    return bad


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def _samples(tok):
    """The first 10 LAMBADA passages plus 3 longer than the 128-token context (left-truncated)."""
    from gpt2_jax.evals.readers import read_lambada
    texts = read_lambada(data_dir=DATA)
    long = [i for i, t in enumerate(texts[:400]) if len(tok.encode(t)) > 130][:3]
    return {"lambada_openai": list(range(10)) + long, "wikitext": [28, 29, 14], "arc_easy": list(range(len(ARC))),
            "lambada_gen_local": [0, 1, 2, 3]}


def _run(lm, env, samples):
    return lm_eval.simple_evaluate(model=lm, tasks=list(samples), samples=samples, task_manager=env["tm"],
                                   bootstrap_iters=0, log_samples=True)


def test_simple_evaluate_equals_the_hf_model(env):
    samples = _samples(env["ours"].tokenizer)
    assert len(samples["lambada_openai"]) == 13
    a, b = _run(env["ours"], env, samples), _run(env["hf"], env, samples)
    for task, keys in {"lambada_openai": ["acc", "perplexity"], "arc_easy": ["acc", "acc_norm"],
                       "wikitext": ["word_perplexity", "byte_perplexity", "bits_per_byte"],
                       "lambada_gen_local": ["exact_match"]}.items():
        for k in keys:
            ours, ref = a["results"][task][f"{k},none"], b["results"][task][f"{k},none"]
            assert _rel(ours, ref) <= REL, (task, k, ours, ref)
    worst = 0.0
    for task in ("lambada_openai", "arc_easy", "wikitext"):
        for sa, sb in zip(a["samples"][task], b["samples"][task]):
            for ra, rb in zip(sa["resps"], sb["resps"]):
                ra, rb = ra[0], rb[0]
                ll_a, ll_b = (ra[0], rb[0]) if isinstance(ra, (tuple, list)) else (ra, rb)
                worst = max(worst, _rel(ll_a, ll_b))
                if isinstance(ra, (tuple, list)):
                    assert ra[1] == rb[1], (task, sa["doc_id"])
    assert worst <= REL
    gen_a = [s["resps"] for s in a["samples"]["lambada_gen_local"]]
    assert gen_a == [s["resps"] for s in b["samples"]["lambada_gen_local"]]
    assert all(len(r[0][0]) > 0 for r in gen_a)  # the model writes text


def _reqs(kind, args):
    return [Instance(request_type=kind, doc={}, arguments=a, idx=0, metadata=("t", i, 1)) for i, a in enumerate(args)]


def test_direct_requests_equal_the_hf_model(env):
    ours, hf = env["ours"], env["hf"]
    tok = ours.tokenizer
    prompt = "Once upon a time there was"
    greedy = hf.generate_until(_reqs("generate_until", [(prompt, {"until": [], "max_gen_toks": 12,
                                                                   "do_sample": False})]))[0]
    assert len(tok.encode(greedy)) >= 8
    ll = [("", "Hello world"), ("", "<|endoftext|>Hello"), ("The cat sat on the ", "mat"),
          ("The cat sat on the", " mat"), (" word" * 300, " end"), ("A\n\n", "B"), (prompt, greedy),
          (prompt, tok.decode(tok.encode(greedy)[:4]))]
    got, ref = ours.loglikelihood(_reqs("loglikelihood", ll)), hf.loglikelihood(_reqs("loglikelihood", ll))
    for (a, ga), (b, gb) in zip(got, ref):
        assert _rel(a, b) <= REL and ga == gb
    assert got[6][1] and got[7][1]  # the model's own greedy text is greedy
    rolling = [("",), ("Hello world",), (" word" * 700,), ("The quick brown fox. " * 40,)]
    got = ours.loglikelihood_rolling(_reqs("loglikelihood_rolling", rolling))
    ref = hf.loglikelihood_rolling(_reqs("loglikelihood_rolling", rolling))
    assert got[0] == 0.0 and all(_rel(a, b) <= REL for a, b in zip(got[1:], ref[1:]))
    mid = greedy.strip().split(" ")[len(greedy.strip().split(" ")) // 2]
    gen = [(prompt, {"until": [mid], "max_gen_toks": 12, "do_sample": False}),
           (prompt, {"until": mid, "max_new_tokens": 12, "temperature": 0.0}),
           (" word" * 300, {"until": ["\n"], "max_gen_toks": 20}),
           ("The meaning of life is", {"until": ["\n\n"], "max_gen_toks": 70, "do_sample": False})]
    got, ref = ours.generate_until(_reqs("generate_until", gen)), hf.generate_until(_reqs("generate_until", gen))
    assert got == ref
    assert got[0] == got[1] and mid not in got[0] and len(got[0]) < len(greedy)  # the stop string fired


def test_sampling_follows_its_arguments(env):
    ours = env["ours"]
    kw = {"until": ["\n"], "max_gen_toks": 10, "do_sample": True, "temperature": 1.0, "top_k": 2}
    reqs = _reqs("generate_until", [("The weather today", kw)] * 4)
    a, b = ours.generate_until(reqs), ours.generate_until(reqs)
    assert all("\n" not in t and len(ours.tokenizer.encode(t)) <= 10 for t in a + b)
    assert a != b or len(set(a)) > 1  # fresh keys per call and per row
    greedy = ours.generate_until(_reqs("generate_until", [("The weather today", {"until": ["\n"],
                                                                                 "max_gen_toks": 10})]))
    assert greedy[0] != a[0] or greedy[0] != a[1]


def test_shared_prefix_equals_whole_requests(env):
    """arc_easy's answers share their question: packed around one copy, the scores equal scoring
    every request alone, with fewer tokens through the model."""
    whole = harness.GPT2JaxLM(checkpoint=(model()[0], model()[1]), batch_size=4, share_prefix=False)
    ours = env["ours"]
    samples = {"arc_easy": list(range(len(ARC)))}
    before = ours.scorer.stats.forward_tokens
    a = _run(ours, env, samples)
    shared_tokens = ours.scorer.stats.forward_tokens - before
    b = _run(whole, env, samples)
    for sa, sb in zip(a["samples"]["arc_easy"], b["samples"]["arc_easy"]):
        for ra, rb in zip(sa["resps"], sb["resps"]):
            np.testing.assert_allclose(ra[0][0], rb[0][0], rtol=1e-5, atol=1e-5)
            assert ra[0][1] == rb[0][1]
    assert shared_tokens < whole.scorer.stats.forward_tokens


def test_shared_prefix_equals_whole_requests_on_real_passages(env):
    """A multiple_choice task over real LAMBADA passages (three choices per passage): lm-eval's own
    request builder, per-choice log-likelihoods within 1e-5 and the same acc, packed or not."""
    whole = harness.GPT2JaxLM(checkpoint=(model()[0], model()[1]), batch_size=4, share_prefix=False)
    ours = env["ours"]
    samples = {"lambada_choice_local": list(range(12))}
    before = ours.scorer.stats.forward_tokens
    a = _run(ours, env, samples)
    shared_tokens = ours.scorer.stats.forward_tokens - before
    b = _run(whole, env, samples)
    for sa, sb in zip(a["samples"]["lambada_choice_local"], b["samples"]["lambada_choice_local"]):
        assert len(sa["resps"]) == 3
        for ra, rb in zip(sa["resps"], sb["resps"]):
            np.testing.assert_allclose(ra[0][0], rb[0][0], rtol=1e-5, atol=1e-5)
    acc = lambda r: r["results"]["lambada_choice_local"]["acc,none"]
    assert acc(a) == acc(b)
    assert shared_tokens * 2 < whole.scorer.stats.forward_tokens


_SHARDED = """
import json, sys
from gpt2_jax import harness
from gpt2_jax.sharding import data_parallel
from lm_eval.api.instance import Instance
lm = harness.GPT2JaxLM(checkpoint=sys.argv[1], batch_size=3, layout=data_parallel())
assert lm.scorer.layout.data_parallel_size == 2
args = json.loads(sys.argv[2])
out = {}
for kind, reqs in args.items():
    inst = [Instance(request_type=kind, doc={}, arguments=tuple(a), idx=0, metadata=("t", i, 1))
            for i, a in enumerate(reqs)]
    out[kind] = getattr(lm, kind)(inst)
print(json.dumps(out))
"""


def test_sharded_over_two_devices_equals_one(env):
    """The same requests on a 2-device data-parallel layout (a subprocess with 2 CPU devices)."""
    import subprocess
    import sys
    q = "Question: Which is a mammal?\nAnswer:"
    reqs = {"loglikelihood": [[q, " whale"], [q, " shark"], ["", "Hello world"]],
            "loglikelihood_rolling": [[" word" * 300], ["The quick brown fox."]],
            "generate_until": [["Once upon a time", {"until": ["\n"], "max_gen_toks": 9}],
                               ["The meaning of life is", {"until": [], "max_gen_toks": 5}]]}
    env_vars = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
                    PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", _SHARDED, str(env["ckpt"]), json.dumps(reqs)], env=env_vars,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = env["ours"]
    ref = ours.loglikelihood(_reqs("loglikelihood", [tuple(r) for r in reqs["loglikelihood"]]))
    for (a, ga), (b, gb) in zip(got["loglikelihood"], ref):
        assert _rel(a, b) <= 1e-5 and ga == gb
    ref = ours.loglikelihood_rolling(_reqs("loglikelihood_rolling", [tuple(r) for r in reqs["loglikelihood_rolling"]]))
    assert all(_rel(a, b) <= 1e-5 for a, b in zip(got["loglikelihood_rolling"], ref))
    assert got["generate_until"] == ours.generate_until(_reqs("generate_until", [tuple(r) for r in
                                                                                 reqs["generate_until"]]))


def test_simple_evaluate_by_registered_name(env):
    res = lm_eval.simple_evaluate(model="gpt2_jax", model_args={"checkpoint": str(env["ckpt"])}, batch_size=4,
                                  tasks=["arc_easy"], limit=2, task_manager=env["tm"], bootstrap_iters=0)
    ref = harness.evaluate(env["ours"], "arc_easy", include_path=env["tasks"], limit=2, bootstrap_iters=0)
    assert res["results"]["arc_easy"]["acc,none"] == ref["results"]["arc_easy"]["acc,none"]


def test_bad_requests_give_one_clear_error(env):
    ours = env["ours"]
    with pytest.raises(InputError, match=r"continuation has 200 tokens, more than the model's context max_length=128"):
        ours.loglikelihood(_reqs("loglikelihood", [("a", " word" * 200)]))
    with pytest.raises(InputError, match=r"max_gen_toks=128 must be in \[1, max_length=128\)"):
        ours.generate_until(_reqs("generate_until", [("a", {"until": [], "max_gen_toks": 128})]))
    with pytest.raises(InputError, match=r"generation kwargs \['num_beams'\] are not supported"):
        ours.generate_until(_reqs("generate_until", [("a", {"until": [], "num_beams": 4})]))
    with pytest.raises(InputError, match=r"unknown gpt2_jax model_args \['pretrained'\]"):
        harness.GPT2JaxLM(pretrained="gpt2")


def test_evaluate_and_its_errors(env, bad_tasks, tmp_path):
    """evaluate() runs local tasks without lm-eval's task index; an unknown task, a task whose data
    is not here offline, and a request longer than the context are one clear error each."""
    out = tmp_path / "h.json"
    res = harness.evaluate(env["ours"], "arc_easy", include_path=env["tasks"], limit=3, bootstrap_iters=0, output=out)
    assert res["results"]["arc_easy"]["sample_len"] == 3
    assert json.loads(out.read_text())["results"]["arc_easy"]["acc,none"] == res["results"]["arc_easy"]["acc,none"]
    assert "arc_easy" in harness.table(res)
    bad = bad_tasks
    for task in ("lambada_hub", "lambada_gone"):
        with pytest.raises(DataError, match=rf"harness task '{task}' needs data that is not available here .*"
                                            "dataset_path: json"):
            harness.evaluate(env["ours"], task, include_path=bad, limit=2, bootstrap_iters=0)
    with pytest.raises(InputError, match="continuation has 200 tokens"):
        harness.evaluate(env["ours"], "long_target", include_path=bad, bootstrap_iters=0)
    with pytest.raises(InputError, match=r"unknown harness task\(s\) 'lambada_opnai' \(did you mean lambada_openai"):
        harness.evaluate(env["ours"], "lambada_opnai,arc_easy", include_path=env["tasks"])


def test_gpt2_jax_eval_harness_tasks(env, tmp_path, capsys):
    from gpt2_jax import cli
    out = tmp_path / "r.json"
    assert cli.main(["eval", "--checkpoint", str(env["ckpt"]), "--harness-tasks", "arc_easy,wikitext",
                     "--harness-include-path", str(env["tasks"]), "--limit", "2", "--output", str(out)]) == 0
    got = json.loads((tmp_path / "r_harness.json").read_text())["results"]
    ref = harness.evaluate(env["ours"], "arc_easy,wikitext", include_path=env["tasks"], limit=2,
                           bootstrap_iters=0)["results"]
    assert _rel(got["wikitext"]["word_perplexity,none"], ref["wikitext"]["word_perplexity,none"]) <= 1e-6
    assert got["arc_easy"]["acc,none"] == ref["arc_easy"]["acc,none"]
    assert "|arc_easy" in capsys.readouterr().out.replace(" ", "")
    assert not out.exists()  # no --tasks: only the harness results
    assert cli.main(["eval", "--checkpoint", str(env["ckpt"]), "--harness-tasks", "nope_task",
                     "--harness-include-path", str(env["tasks"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown harness task(s) 'nope_task'" in err[0]


def test_python_m_gpt2_jax_harness(env, bad_tasks, capsys):
    """lm-eval's own CLI with the model registered: a table, and unknown tasks as one line."""
    args = ["--model", "gpt2_jax", "--model_args", f"checkpoint={env['ckpt']}", "--include_path", str(env["tasks"]),
            "--limit", "2", "--batch_size", "4"]
    assert harness.main(args + ["--tasks", "arc_easy"]) == 0
    assert "arc_easy" in capsys.readouterr().out
    assert harness.main(args + ["--tasks", "arc_esy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m gpt2_jax.harness: error: Tasks not found: arc_esy")
    args[args.index("--include_path") + 1] = str(bad_tasks)
    assert harness.main(args + ["--tasks", "lambada_hub"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m gpt2_jax.harness: error: a harness task needs data that is not available")
