"""The import contracts in setup.cfg ([importlinter]): the library never imports the application,
nothing imports a layer above it, TensorFlow stays in the data pipeline. `lint-imports` must pass on
the tree, and must fail on a copy of it with an upward import planted, naming the broken contract."""
import configparser
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT_IMPORTS = pathlib.Path(sys.executable).parent / "lint-imports"


def contract_name(key: str) -> str:
    """The `name` of [importlinter:contract:KEY] in setup.cfg, as lint-imports prints it."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg[f"importlinter:contract:{key}"]["name"]


def lint_imports(root: pathlib.Path) -> subprocess.CompletedProcess:
    """Run lint-imports on the packages under `root` with `root`/setup.cfg (no cache files)."""
    if not LINT_IMPORTS.is_file():
        pytest.fail(f"{LINT_IMPORTS} not found: install the test extras (pip install -e '.[test]')")
    # PYTHONPATH and cwd make grimp find the packages under `root` before the editable install's
    # finder; COLUMNS keeps long contract names on one line.
    env = dict(os.environ, PYTHONPATH=str(root), COLUMNS="300")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "setup.cfg")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, f"lint-imports failed:\n{proc.stdout}\n{proc.stderr}"
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout


@pytest.fixture
def copy_of_tree(tmp_path) -> pathlib.Path:
    """The library, the application and setup.cfg, copied so a test can break them."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "notebooks")
    shutil.copytree(ROOT / "gpt2_jax", tmp_path / "gpt2_jax", ignore=ignore)
    shutil.copytree(ROOT / "experiments", tmp_path / "experiments", ignore=ignore)
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    return tmp_path


def plant(root: pathlib.Path, module: str, line: str) -> None:
    """Append `line` to `module` in the copy (creating the module if it does not exist)."""
    path = root / (module.replace(".", "/") + ".py")
    text = path.read_text() if path.exists() else ""
    path.write_text(text + f"\n{line}  # planted by test_layers_contract\n")


# (contract key, {module: line to plant}, what lint-imports must report). The reports name the
# planted import itself, so they also show that the copy, not the repo, was analysed.
PLANTED = [
    pytest.param("layers", {"gpt2_jax.model": "import gpt2_jax.evals"},
                 "gpt2_jax.model -> gpt2_jax.evals", id="upward-import"),
    pytest.param("library-not-application", {"gpt2_jax.config": "import experiments"},
                 "gpt2_jax.config -> experiments", id="library-imports-experiments"),
    pytest.param("tensorflow-in-data-pipeline", {"gpt2_jax.generate": "import tensorflow"},
                 "gpt2_jax.generate -> tensorflow", id="tensorflow-outside-data"),
    # A core module reaching TensorFlow through a module that may import it (the data pipeline).
    pytest.param("core-without-tf-torch", {"gpt2_jax.data.planted_tf": "import tensorflow",
                                           "gpt2_jax.tokenizer": "import gpt2_jax.data.planted_tf"},
                 "gpt2_jax.tokenizer is not allowed to import tensorflow", id="core-reaches-tensorflow"),
]


@pytest.mark.parametrize("key, planted, reported", PLANTED)
def test_a_planted_violation_breaks_its_contract(copy_of_tree, key, planted, reported):
    for module, line in planted.items():
        plant(copy_of_tree, module, line)
    proc = lint_imports(copy_of_tree)
    out = proc.stdout + proc.stderr
    print(out)
    assert proc.returncode != 0
    assert f"{contract_name(key)} BROKEN" in out
    assert reported in out
