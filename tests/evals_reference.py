"""Shared pieces of the eval tests: one tiny model (JAX params, its Scorer and the same weights in
a PyTorch `transformers` GPT2LMHeadModel), cached per process so every test file reuses one set
of compilations, and straightforward PyTorch re-implementations of the scoring definitions."""
from __future__ import annotations

import functools
import os

import numpy as np

# Weights ~N(0, 0.3) rather than GPT-2's 0.02: logits then spread over several nats, so an
# off-by-one target or a wrong window changes the scores far beyond the 1e-3 tolerance.
TINY = dict(n_layer=2, n_embd=64, n_head=4, n_positions=128, attn_block_size=128, initializer_range=0.3)
DATA = os.environ.get("GPT2_JAX_DATA_DIR", "")


@functools.lru_cache(maxsize=None)
def model():
    """(params, cfg, scorer, tokenizer, torch model) for the tiny config, built once."""
    import jax
    import torch
    import transformers

    from gpt2_jax.config import GPT2Config
    from gpt2_jax.evals.scoring import Scorer
    from gpt2_jax.interop import hf_config_from_cfg, params_to_hf_state_dict
    from gpt2_jax.model import init_params
    from gpt2_jax.tokenizer import Tokenizer

    cfg = GPT2Config(**TINY)
    params = init_params(cfg, jax.random.key(0))
    tm = transformers.GPT2LMHeadModel(transformers.GPT2Config(**hf_config_from_cfg(cfg))).eval()
    sd = {k: torch.from_numpy(np.array(v)) for k, v in params_to_hf_state_dict(params, cfg).items()}
    missing, unexpected = tm.load_state_dict(sd, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    tm.tie_weights()
    return params, cfg, Scorer(params, cfg, batch_size=8), Tokenizer.load(os.path.join(DATA, "gpt2_vocab")), tm


@functools.lru_cache(maxsize=None)
def stopword_ids() -> frozenset:
    from gpt2_jax.evals.lambada import STOPWORDS
    tok = model()[3]
    return frozenset(v for v in range(50257) if tok.decode([v]).strip() in STOPWORDS)


def torch_logits(ids: list[int]) -> np.ndarray:
    """float64 log-softmax of the torch model's logits for the inputs `ids` [T, V]."""
    import torch
    tm = model()[4]
    with torch.no_grad():
        logits = tm(torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits, dim=-1).numpy()


def torch_score(inputs: list[int], targets: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """log p(targets[i] | inputs[:i+1]) and argmax flags, from the torch model."""
    lp = torch_logits(inputs)
    idx = np.arange(len(targets))
    return lp[idx, targets], lp.argmax(-1) == np.asarray(targets)


def torch_greedy(ids: list[int], n_new: int) -> list[int]:
    """Greedy continuation by re-running the whole (left-truncated) sequence each step."""
    ctx = model()[1].n_positions
    out = list(ids)
    for _ in range(n_new):
        out.append(int(torch_logits(out[-ctx:])[-1].argmax()))
    return out[len(ids):]


def rel_close(ours: float, ref: float, tol: float = 1e-3) -> bool:
    return abs(ours - ref) <= tol * max(abs(ref), 1e-12)
