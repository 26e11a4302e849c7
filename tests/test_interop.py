"""gpt2_jax.interop: HF safetensors / pytorch_model.bin and OpenAI TF checkpoints round-trip to the
same logits (checked against transformers and against a TF checkpoint written independently here),
and every broken checkpoint gives one clear CheckpointError."""
import json
import pathlib
import shutil
import sys

import jax
import numpy as np
import pytest
import torch
import transformers

from gpt2_jax import interop, model
from gpt2_jax.config import GPT2Config
from gpt2_jax.errors import CheckpointError
from gpt2_jax.tokenizer import Tokenizer

_forward = jax.jit(model.forward, static_argnums=2)


def _random_params(cfg, seed):
    """Params drawn directly in numpy (no init compile): every tensor random, LN scales near 1."""
    rng = np.random.default_rng(seed)

    def draw(path, s):
        x = rng.normal(0.0, 0.02, s.shape).astype(np.float32)
        return x + 1.0 if path[-1].key == "scale" else x
    return jax.tree_util.tree_map_with_path(draw, model.param_shapes(cfg))


def _hf_logits(hf, tokens):
    with torch.no_grad():
        return hf(torch.from_numpy(np.asarray(tokens, np.int64))).logits.numpy()


def _load_hf_model(path):
    return transformers.GPT2LMHeadModel.from_pretrained(path, attn_implementation="eager").eval()


def _assert_same_params(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ------------------------------------------------------------------------------- full 124M
def test_save_hf_transformers_roundtrip_124m(tmp_path):
    """save_hf -> transformers.from_pretrained -> save_pretrained -> load_hf keeps the logits."""
    cfg = GPT2Config.from_name("gpt2")
    params = _random_params(cfg, seed=0)
    tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, (1, 64))
    ours = np.asarray(_forward(params, tokens, cfg))
    interop.save_hf(params, cfg, tmp_path / "ours")
    hf = _load_hf_model(tmp_path / "ours")
    diff = np.abs(_hf_logits(hf, tokens) - ours).max()
    assert diff <= 1e-4, f"transformers vs ours: max abs logits diff {diff}"
    hf.save_pretrained(tmp_path / "theirs")
    del hf
    back, cfg2 = interop.load_checkpoint(tmp_path / "theirs")
    assert cfg2 == cfg  # HF's recorded 0.1 dropout is a training choice: loaded models start with it off
    _assert_same_params(back, params)
    np.testing.assert_array_equal(np.asarray(_forward(back, tokens, cfg)), ours)


# ------------------------------------------------------------------------------ small model
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=96, vocab_size=300)
    params = _random_params(cfg, seed=2)
    tokens = np.random.default_rng(3).integers(0, cfg.vocab_size, (2, 40))
    hf_dir = interop.save_hf(params, cfg, tmp_path_factory.mktemp("hf") / "model")
    return cfg, params, tokens, np.asarray(_forward(params, tokens, cfg)), hf_dir


def test_state_dict_roundtrip_with_and_without_prefix(small):
    cfg, params, *_ = small
    sd = interop.params_to_hf_state_dict(params, cfg)
    assert sd["transformer.h.1.attn.c_attn.weight"].shape == (64, 192)
    assert sd["transformer.h.0.attn.c_proj.weight"].shape == (64, 64)
    assert "lm_head.weight" not in sd  # save_pretrained drops the tied head too
    _assert_same_params(interop.hf_state_dict_to_params(sd, cfg), params)
    bare = {k.removeprefix("transformer."): v for k, v in sd.items()}
    bare["h.0.attn.bias"] = np.tril(np.ones((1, 1, 96, 96), bool))  # old HF causal-mask buffers
    bare["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
    bare["lm_head.weight"] = sd["transformer.wte.weight"]
    _assert_same_params(interop.hf_state_dict_to_params(bare, cfg), params)


def test_c_attn_columns_are_q_k_v_then_heads(small):
    """HF splits c_attn's 3D columns into q|k|v, then heads: check against our [D, 3, H, K] kernel."""
    cfg, params, *_ = small
    w = interop.params_to_hf_state_dict(params, cfg)["transformer.h.1.attn.c_attn.weight"]
    ours = np.asarray(params["h"]["attn"]["c_attn"]["kernel"][1])
    k_cols = w[:, cfg.n_embd:2 * cfg.n_embd]
    np.testing.assert_array_equal(k_cols[:, 2 * cfg.head_dim:3 * cfg.head_dim], ours[:, 1, 2, :])


def test_transformers_reads_our_config(small, tmp_path):
    cfg, params, tokens, ours, hf_dir = small
    hf = _load_hf_model(hf_dir)
    assert (hf.config.n_layer, hf.config.n_embd, hf.config.vocab_size) == (2, 64, 300)
    np.testing.assert_allclose(_hf_logits(hf, tokens), ours, atol=1e-5, rtol=0)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")  # index.json + several shards
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    back, _ = interop.load_hf(tmp_path / "sharded")
    _assert_same_params(back, params)


def test_hf_config_roundtrip():
    cfg = GPT2Config(n_layer=3, n_embd=48, n_head=6, n_positions=64, vocab_size=99, n_inner=100, dropout=0.1,
                     layer_norm_epsilon=1e-6)
    d = interop.hf_config_from_cfg(cfg)
    assert d["resid_pdrop"] == 0.1
    cfg = cfg.replace(dropout=0.0)  # dropout is not loaded (a training choice); everything else is
    assert interop.cfg_from_hf_config(d) == cfg
    assert interop.cfg_from_hf_config(json.loads(transformers.GPT2Config(**d).to_json_string())) == cfg


@pytest.mark.parametrize("key,value", [("scale_attn_by_inverse_layer_idx", True), ("reorder_and_upcast_attn", True),
                                       ("activation_function", "relu"), ("tie_word_embeddings", False),
                                       ("model_type", "gpt_neo")])
def test_unsupported_hf_options_rejected(key, value):
    d = interop.hf_config_from_cfg(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10))
    with pytest.raises(CheckpointError, match=key if key != "activation_function" else "relu"):
        interop.cfg_from_hf_config({**d, key: value})


def test_pytorch_bin_and_bf16_safetensors(small, tmp_path):
    cfg, params, *_ = small
    sd = interop.params_to_hf_state_dict(params, cfg)
    d = tmp_path / "bin"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(interop.hf_config_from_cfg(cfg)))
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, d / "pytorch_model.bin")
    back, _ = interop.load_checkpoint(d)
    _assert_same_params(back, params)

    from safetensors.torch import save_file
    d16 = tmp_path / "bf16"
    d16.mkdir()
    shutil.copy(d / "config.json", d16 / "config.json")
    save_file({k: torch.from_numpy(v).bfloat16() for k, v in sd.items()}, d16 / "model.safetensors")
    back16, _ = interop.load_checkpoint(d16)
    assert back16["wte"].dtype == np.float32
    np.testing.assert_allclose(np.asarray(back16["wte"]), np.asarray(params["wte"]), rtol=1e-2, atol=1e-4)


def test_pytorch_bin_without_torch_is_a_clear_error(small, tmp_path, monkeypatch):
    cfg, params, *_ = small
    (tmp_path / "config.json").write_text(json.dumps(interop.hf_config_from_cfg(cfg)))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(CheckpointError, match="needs torch"):
        interop.load_checkpoint(tmp_path)


# ----------------------------------------------------------------------------------- OpenAI
def test_openai_roundtrip(small, tmp_path):
    import tensorflow as tf
    cfg, params, tokens, ours, _ = small
    interop.save_openai(params, cfg, tmp_path)
    shapes = tf.train.load_checkpoint(str(tmp_path)).get_variable_to_shape_map()
    assert shapes["model/h0/attn/c_attn/w"] == [1, 64, 192]
    assert shapes["model/h1/mlp/c_proj/w"] == [1, 256, 64]
    assert shapes["model/ln_f/g"] == [64] and shapes["model/wte"] == [300, 64]
    assert len(shapes) == 4 + 12 * cfg.n_layer
    assert json.loads((tmp_path / "hparams.json").read_text()) == dict(
        n_vocab=300, n_ctx=96, n_embd=64, n_head=4, n_layer=2)
    back, cfg2 = interop.load_checkpoint(tmp_path)
    assert cfg2 == cfg
    np.testing.assert_array_equal(np.asarray(_forward(back, tokens, cfg)), ours)


def test_reads_tf1_checkpoint_with_openai_names(small, tmp_path):
    """A TF1 Saver checkpoint named as OpenAI's train code names its variables, filled from HF
    tensors (OpenAI conv1d weight = HF Conv1D weight with a leading 1), loads to HF's logits."""
    import tensorflow as tf
    cfg, _, tokens, _, hf_dir = small
    hf = _load_hf_model(hf_dir)
    sd = {k: v.numpy() for k, v in hf.state_dict().items()}
    tensors = {"model/wte": sd["transformer.wte.weight"], "model/wpe": sd["transformer.wpe.weight"],
               "model/ln_f/g": sd["transformer.ln_f.weight"], "model/ln_f/b": sd["transformer.ln_f.bias"]}
    for i in range(cfg.n_layer):
        for mod in ("ln_1", "ln_2"):
            tensors[f"model/h{i}/{mod}/g"] = sd[f"transformer.h.{i}.{mod}.weight"]
            tensors[f"model/h{i}/{mod}/b"] = sd[f"transformer.h.{i}.{mod}.bias"]
        for mod in ("attn/c_attn", "attn/c_proj", "mlp/c_fc", "mlp/c_proj"):
            hf_name = f"transformer.h.{i}.{mod.replace('/', '.')}"
            tensors[f"model/h{i}/{mod}/w"] = sd[f"{hf_name}.weight"][None]
            tensors[f"model/h{i}/{mod}/b"] = sd[f"{hf_name}.bias"]
    with tf.Graph().as_default():
        for name, value in tensors.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(tmp_path / "model.ckpt"))
    (tmp_path / "hparams.json").write_text(json.dumps(dict(n_vocab=300, n_ctx=96, n_embd=64, n_head=4, n_layer=2)))
    params, cfg2 = interop.load_checkpoint(tmp_path)
    np.testing.assert_allclose(np.asarray(_forward(params, tokens, cfg2)), _hf_logits(hf, tokens), atol=1e-5, rtol=0)


def test_released_name_downloads_into_cache(small, tmp_path, monkeypatch, data_dir):
    """`load_checkpoint('gpt2')` fetches the HF safetensors release (no TensorFlow needed) and the
    BPE files once into $GPT2_JAX_CACHE (here from a file:// mirror: tests never touch the
    network), then loads from the cache alone; the tokenizer loads from the same dir."""
    cfg, params, tokens, ours, _ = small
    mirror = tmp_path / "mirror"
    interop.save_hf(params, cfg, mirror / "gpt2")
    shutil.copy(data_dir / "gpt2_vocab" / "encoder.json", mirror / "gpt2" / "vocab.json")
    shutil.copy(data_dir / "gpt2_vocab" / "vocab.bpe", mirror / "gpt2" / "merges.txt")
    monkeypatch.setattr(interop, "HF_URL", mirror.as_uri() + "/{name}/{file}")
    monkeypatch.setenv("GPT2_JAX_CACHE", str(tmp_path / "cache"))
    back, cfg2 = interop.load_checkpoint("gpt2")
    local = tmp_path / "cache" / "hf" / "gpt2"
    assert sorted(p.name for p in local.iterdir()) == sorted(interop.HF_FILES.values())
    np.testing.assert_array_equal(np.asarray(_forward(back, tokens, cfg2)), ours)
    assert Tokenizer.from_dir(local).encode("hello world") == [31373, 995]
    shutil.rmtree(mirror)
    again, _ = interop.load_checkpoint("GPT2")  # cached: no download needed
    _assert_same_params(again, back)
    with pytest.raises(CheckpointError, match=r"cannot download .*gpt2-medium/config.json"):
        interop.load_checkpoint("gpt2-medium")
    assert not any((tmp_path / "cache" / "hf" / "gpt2-medium").glob("*.part"))


def test_openai_release_downloads_into_cache(small, tmp_path, monkeypatch):
    """download_release(fmt="openai") fetches OpenAI's original TF release files."""
    cfg, params, tokens, ours, _ = small
    mirror = tmp_path / "mirror"
    interop.save_openai(params, cfg, mirror / "124M")
    for name in ("encoder.json", "vocab.bpe"):
        (mirror / "124M" / name).write_text("{}")
    monkeypatch.setattr(interop, "RELEASE_URL", mirror.as_uri())
    monkeypatch.setenv("GPT2_JAX_CACHE", str(tmp_path / "cache"))
    d = interop.download_release("124M", fmt="openai")
    assert sorted(p.name for p in d.iterdir()) == sorted(interop.RELEASE_FILES)
    back, cfg2 = interop.load_checkpoint(d)
    np.testing.assert_array_equal(np.asarray(_forward(back, tokens, cfg2)), ours)


def test_training_workdirs_load_through_gpt2_jax_workdir(small, tmp_path, monkeypatch):
    cfg, params, *_ = small
    from gpt2_jax import workdir
    monkeypatch.setattr(workdir, "is_workdir", lambda d: (pathlib.Path(d) / "marker").is_file())
    monkeypatch.setattr(workdir, "load_for_inference", lambda d, **kw: (params, cfg.replace(**kw)))
    (tmp_path / "marker").write_text("")
    got, cfg2 = interop.load_checkpoint(tmp_path, attention="xla")
    assert got is params and cfg2.attention == "xla"


# ------------------------------------------------------------------------------- bad inputs
def _copy_hf(hf_dir, tmp_path):
    return pathlib.Path(shutil.copytree(hf_dir, tmp_path / "copy"))


def test_shape_mismatch_names_the_tensor(small, tmp_path):
    d = _copy_hf(small[4], tmp_path)
    hf_cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**hf_cfg, "vocab_size": 301}))
    with pytest.raises(CheckpointError, match=r"transformer\.wte\.weight has shape \(300, 64\) .*expects \(301, 64\)"):
        interop.load_checkpoint(d)


def test_missing_tensor_and_extra_layers(small, tmp_path):
    from safetensors.numpy import load_file, save_file
    cfg, *_ = small
    d = _copy_hf(small[4], tmp_path)
    sd = load_file(str(d / "model.safetensors"))
    save_file({k: v for k, v in sd.items() if k != "transformer.h.1.mlp.c_fc.bias"}, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"transformer\.h\.1\.mlp\.c_fc\.bias \(expected shape \(256,\)\) is missing"):
        interop.load_checkpoint(d)
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['transformer\.h\.1\."):
        interop.hf_state_dict_to_params(sd, cfg.replace(n_layer=1))


def test_truncated_safetensors(small, tmp_path):
    d = _copy_hf(small[4], tmp_path)
    blob = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a readable safetensors file .*truncated"):
        interop.load_checkpoint(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        interop.load_checkpoint(d)


def test_truncated_tf_checkpoint(small, tmp_path):
    cfg, params, *_ = small
    interop.save_openai(params, cfg, tmp_path)
    data = tmp_path / "model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        interop.load_checkpoint(tmp_path)


@pytest.mark.parametrize("what", ["unknown-name", "empty-dir", "file"])
def test_neither_format(tmp_path, what):
    target = {"unknown-name": "gpt3-xxl", "empty-dir": tmp_path, "file": tmp_path / "weights.npz"}[what]
    if what == "file":
        target.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"is neither an HF dir .* nor a released model name \(gpt2, "):
        interop.load_checkpoint(target)
