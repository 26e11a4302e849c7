"""Shared pieces of the eval tests: one tiny model (JAX params, its Scorer and the same weights in
a PyTorch `transformers` GPT2LMHeadModel), cached per process so every test file reuses one set
of compilations, and straightforward PyTorch re-implementations of the scoring definitions."""
from __future__ import annotations

import functools
import os

import numpy as np

# Weights far larger than GPT-2's N(0, 0.02) (see random_params): logits then spread over several
# nats, so an off-by-one target or a wrong window moves the scores far beyond the 1e-3 tolerance.
TINY = dict(n_layer=2, n_embd=64, n_head=4, n_positions=128, attn_block_size=128)
DATA = os.environ.get("GPT2_JAX_DATA_DIR", "")


def random_params(cfg, seed: int = 0):
    """Random weights in the model's own layout (param_shapes, no init compile): matrices
    ~N(0, 0.2), embeddings ~N(0, 0.3), LayerNorm scales 1 ± 0.1 and biases ~N(0, 0.1)."""
    import jax
    import jax.numpy as jnp

    from gpt2_jax.model import param_shapes
    rng = np.random.default_rng(seed)

    def draw(path, sd):
        name = jax.tree_util.keystr(path)
        if "scale" in name:
            x = 1.0 + 0.1 * rng.standard_normal(sd.shape)
        elif "bias" in name:
            x = 0.1 * rng.standard_normal(sd.shape)
        else:
            x = (0.3 if ("wte" in name or "wpe" in name) else 0.2) * rng.standard_normal(sd.shape)
        return jnp.asarray(x, sd.dtype)

    return jax.tree_util.tree_map_with_path(draw, param_shapes(cfg))


@functools.lru_cache(maxsize=None)
def model():
    """(params, cfg, scorer, tokenizer, torch model) for the tiny config, built once."""
    import torch
    import transformers

    from gpt2_jax.config import GPT2Config
    from gpt2_jax.evals.scoring import Scorer
    from gpt2_jax.interop import hf_config_from_cfg, params_to_hf_state_dict
    from gpt2_jax.tokenizer import Tokenizer

    torch.set_num_threads(1)  # the tiny model gains nothing from threads; JAX shares the cores
    cfg = GPT2Config(**TINY)
    params = random_params(cfg)
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():  # every weight is overwritten below
        tm = transformers.GPT2LMHeadModel(transformers.GPT2Config(**hf_config_from_cfg(cfg))).eval()
    sd = {k: torch.from_numpy(np.array(v)) for k, v in params_to_hf_state_dict(params, cfg).items()}
    missing, unexpected = tm.load_state_dict(sd, strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    tm.tie_weights()
    assert torch.equal(tm.lm_head.weight, tm.transformer.wte.weight)
    return params, cfg, Scorer(params, cfg, batch_size=8), Tokenizer.load(os.path.join(DATA, "gpt2_vocab")), tm


@functools.lru_cache(maxsize=None)
def stopword_ids() -> frozenset:
    from gpt2_jax.evals.lambada import STOPWORDS
    tok = model()[3]
    return frozenset(v for v in range(50257) if tok.decode([v]).strip() in STOPWORDS)


def torch_logits(ids: list[int], keep: int = 0) -> np.ndarray:
    """Log-softmax of the torch model's logits for the inputs `ids` [T, V] (as float64); with
    `keep`, only for the last `keep` positions."""
    import torch
    tm = model()[4]
    with torch.no_grad():
        logits = tm(torch.tensor([ids]), logits_to_keep=keep).logits[0]
    return torch.log_softmax(logits, dim=-1).double().numpy()


def torch_score(inputs: list[int], targets: list[int], keep: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """log p(targets[i] | inputs[:i+1]) and argmax flags, from the torch model (with `keep`, only
    for the last `keep` positions)."""
    lp = torch_logits(inputs, keep)
    targets = np.asarray(targets)[-len(lp):]
    return lp[np.arange(len(targets)), targets], lp.argmax(-1) == targets


def torch_greedy(ids: list[int], n_new: int) -> list[int]:
    """Greedy continuation by re-running the whole (left-truncated) sequence each step."""
    ctx = model()[1].n_positions
    out = list(ids)
    for _ in range(n_new):
        out.append(int(torch_logits(out[-ctx:], keep=1)[-1].argmax()))
    return out[len(ids):]


def harness_windows(tokens: list[int], prefix: int, max_len: int) -> list[tuple[list[int], int]]:
    """lm-eval-harness utils.get_rolling_token_windows(context_len=1) + make_disjoint_window, then
    the model input (context + continuation)[-(max_len + 1):] of _loglikelihood_tokens, as
    (sequence, number of scored tokens at its end)."""
    if not tokens:
        return []
    first = min(max_len, len(tokens))
    windows = [([prefix] + tokens[:first - 1], tokens[:first])]
    predicted = first
    while predicted < len(tokens):
        wl = min(len(tokens) - predicted, max_len)
        end = predicted + wl
        windows.append((tokens[end - max_len - 1:end - 1], tokens[end - wl:end]))
        predicted += wl
    out = []
    for ctx, pred in windows:
        ctx = ctx[:len(ctx) - (len(pred) - 1)]
        out.append(((ctx + pred)[-(max_len + 1):], len(pred)))
    return out


def torch_total_ll(requests: list[tuple[list[int], int]]) -> float:
    """Sum over (seq, n) of the torch log-probs of the last n tokens of seq."""
    total = 0.0
    for seq, n in requests:
        total += torch_score(seq[:-1], seq[1:], keep=n)[0].sum()
    return total


def rel_close(ours: float, ref: float, tol: float = 1e-3) -> bool:
    return abs(ours - ref) <= tol * max(abs(ref), 1e-12)
