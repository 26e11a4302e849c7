"""The wheel as a new user meets it: built from the tree, installed with the core requirements only
(pinned by .ci/constraints.txt) into a fresh venv with no TensorFlow and no torch, then used from a
directory outside the repo: import, load an HF checkpoint, generate, `gpt2-jax sample`,
`gpt2-jax eval`; `experiments` is not there; a [train] feature names its extra.

Each step prints its time (pytest -s shows them); with a warm pip cache the module takes ~1-2 min.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile

import pytest

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
SOURCES = ["gpt2_jax", "setup.cfg", "pyproject.toml", "README.md", "LICENSE"]  # what the wheel is built from
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[test_install +{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def run(cmd, *, timeout=600, check=True, **kw) -> subprocess.CompletedProcess:
    t = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    log(f"{' '.join(map(str, cmd))[:160]}  -> exit {proc.returncode} in {time.perf_counter() - t:.1f}s")
    if check and proc.returncode != 0:
        pytest.fail(f"{cmd} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    """gpt2_jax-*.whl built (isolated, as pip would) from a copy of the tree's sources."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, src / name)
    proc = run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp / "dist", src], check=False)
    if "No module named build" in proc.stderr:
        pytest.fail("the `build` package is missing: install the test extras (bash .ci/setup)")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "License classifiers are deprecated" not in proc.stdout + proc.stderr
    (whl,) = (tmp / "dist").glob("gpt2_jax-*.whl")
    return whl


@pytest.fixture(scope="module")
def core_venv(wheel, tmp_path_factory) -> pathlib.Path:
    """A fresh venv holding the wheel and its core requirements at the constraints' versions."""
    if not CONSTRAINTS.is_file():
        pytest.fail(f"{CONSTRAINTS} is missing: regenerate it with bash .ci/lock")
    venv = tmp_path_factory.mktemp("venv") / "core"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    # The test venv's pip installs into the new venv: no ensurepip, same pip config (find-links).
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
         "-c", CONSTRAINTS, wheel], timeout=900)
    return venv


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> pathlib.Path:
    """A working directory outside the repo, so nothing is importable from a clone."""
    return tmp_path_factory.mktemp("elsewhere")


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    e["JAX_PLATFORMS"] = "cpu"
    return e


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> pathlib.Path:
    """A tiny HF checkpoint (config.json + model.safetensors) with the real GPT-2 vocabulary."""
    import jax

    from gpt2_jax import interop, model
    from gpt2_jax.config import GPT2Config

    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64)
    return interop.save_hf(model.init_params(cfg, jax.random.key(0)), cfg, tmp_path_factory.mktemp("ckpt") / "hf")


# Runs in the core venv. Records, per step, whether it worked, which heavy modules are in
# sys.modules, and every attempt to import one of them with the importing chain of files.
FACTS_SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys, traceback
    HEAVY = ("tensorflow", "tensorflow_datasets", "torch", "sentencepiece", "lm_eval", "experiments")
    attempts = {}

    class Tracer(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            top = name.partition(".")[0]
            if top in HEAVY and top not in attempts:
                frames = [f for f in traceback.extract_stack()[:-1] if "importlib" not in f.filename]
                attempts[top] = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in frames]
            return None

    sys.meta_path.insert(0, Tracer())
    facts, ctx = {}, {}

    def step(name, fn):
        try:
            facts[name] = {"ok": True, "value": fn()}
        except BaseException as e:
            facts[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        facts[name]["in_sys_modules"] = sorted(m for m in HEAVY if m in sys.modules)
        facts[name]["attempts"] = dict(attempts)

    def load():
        import gpt2_jax
        ctx["params"], ctx["cfg"] = gpt2_jax.load_checkpoint(sys.argv[1])
        return {"n_layer": ctx["cfg"].n_layer, "vocab_size": ctx["cfg"].vocab_size}

    def generate():
        import gpt2_jax
        return [int(t) for t in gpt2_jax.generate(ctx["params"], ctx["cfg"], [1, 2, 3], max_new_tokens=5)]

    step("import", lambda: __import__("gpt2_jax").__file__)
    step("load_checkpoint", load)
    step("generate", generate)
    json.dump(facts, open(sys.argv[2], "w"), indent=1)
""")


@pytest.fixture(scope="module")
def facts(core_venv, hf_dir, outside, env) -> dict:
    script, out = outside / "facts.py", outside / "facts.json"
    script.write_text(FACTS_SCRIPT)
    run([core_venv / "bin" / "python", script, hf_dir, out], cwd=outside, env=env)
    return json.loads(out.read_text())


def gpt2_jax_attempts(fact: dict, modules=("tensorflow", "tensorflow_datasets", "torch")) -> dict:
    """{module: importing chain} for each attempt to import `module` whose importer is gpt2_jax."""
    return {m: chain for m, chain in fact["attempts"].items()
            if m in modules and chain and chain[-1].startswith("gpt2_jax/")}


def test_wheel_holds_only_the_library(wheel):
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"gpt2_jax", wheel.name.split("-py3")[0] + ".dist-info"}, tops


def test_core_install_has_no_tensorflow_or_torch(core_venv, outside, env):
    code = ("import importlib.util as u, json; print(json.dumps({m: u.find_spec(m) is not None for m in "
            "['tensorflow', 'torch', 'tensorflow_datasets', 'experiments', 'jax', 'flax']}))")
    found = json.loads(run([core_venv / "bin" / "python", "-c", code], cwd=outside, env=env).stdout)
    assert found == {"tensorflow": False, "torch": False, "tensorflow_datasets": False, "experiments": False,
                     "jax": True, "flax": True}


def test_import_gpt2_jax_imports_no_tensorflow(facts):
    f = facts["import"]
    assert f["ok"], f.get("traceback")
    assert "tensorflow" not in f["in_sys_modules"]
    assert not gpt2_jax_attempts(f), f"import gpt2_jax tried to import: {gpt2_jax_attempts(f)}"


def test_hf_checkpoint_loads_without_tensorflow(facts):
    f = facts["load_checkpoint"]
    assert f["ok"], f.get("traceback")
    assert f["value"] == {"n_layer": 2, "vocab_size": 50257}
    assert not gpt2_jax_attempts(f), f"load_checkpoint tried to import: {gpt2_jax_attempts(f)}"


def test_generate_works(facts):
    f = facts["generate"]
    assert f["ok"], f.get("traceback")
    assert len(f["value"]) == 8 and f["value"][:3] == [1, 2, 3]
    assert not gpt2_jax_attempts(f), f"generate tried to import: {gpt2_jax_attempts(f)}"


def test_sample_console_script(core_venv, hf_dir, outside, env, data_dir):
    proc = run([core_venv / "bin" / "gpt2-jax", "sample", "--checkpoint", hf_dir, "--prompt", "hi",
                "--max-new-tokens", "5"], cwd=outside, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.startswith("hi")


def test_eval_console_script(core_venv, hf_dir, outside, env, data_dir):
    out = outside / "eval" / "results.json"
    proc = run([core_venv / "bin" / "gpt2-jax", "eval", "--checkpoint", hf_dir, "--tasks", "lambada",
                "--limit", "20", "--output", out], cwd=outside, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(out.read_text())
    assert 0.0 <= results["lambada"]["acc"] <= 100.0


def test_experiments_is_not_installed(core_venv, outside, env):
    proc = run([core_venv / "bin" / "python", "-c", "import experiments"], cwd=outside, env=env, check=False)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr


def test_train_feature_without_its_extra_names_the_extra(core_venv, outside, env):
    corpus = outside / "x.txt"
    corpus.write_text("some text to train a tokenizer on\n" * 50)
    proc = run([core_venv / "bin" / "gpt2-jax", "train-tokenizer", "--input", corpus, "--model-prefix",
                outside / "p"], cwd=outside, env=env, check=False)
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert "pip install 'gpt2-jax[train]'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_harness_without_its_extra_names_the_extra(core_venv, hf_dir, outside, env):
    proc = run([core_venv / "bin" / "gpt2-jax", "eval", "--checkpoint", hf_dir, "--harness-tasks", "lambada_openai"],
               cwd=outside, env=env, check=False)
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert "pip install 'gpt2-jax[harness]'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr


def test_generation_metrics_without_their_extra_name_the_extra(core_venv, hf_dir, outside, env, data_dir):
    src = outside / "wmt" / "newstest2014-fren-src.en.sgm"
    src.parent.mkdir()
    src.write_text('<seg id="1">Hello</seg>\n')
    (src.parent / "newstest2014-fren-ref.fr.sgm").write_text('<seg id="1">Bonjour</seg>\n')
    proc = run([core_venv / "bin" / "gpt2-jax", "eval", "--checkpoint", hf_dir, "--tasks", "wmt14_en_fr",
                "--file", f"wmt14_en_fr={src}", "--output", outside / "w.json"], cwd=outside, env=env, check=False)
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert "WMT-14 BLEU needs the package 'sacrebleu'" in proc.stderr and "gpt2-jax[evals]" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
