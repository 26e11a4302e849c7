"""Training tied to PyTorch (Levanter's test_hf_gpt2_serialize checks both): on a tiny fp32 GPT-2,
the gradient of every parameter from gpt2_jax.loss.loss_fn equals transformers' GPT2LMHeadModel's
(same weights, same batch), and 5 steps of gpt2_jax.train.optimizer (decay mask, global-norm
clipping, warmup + cosine) equal torch.optim.AdamW with the same settings."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from gpt2_jax import interop
from gpt2_jax.config import GPT2Config
from gpt2_jax.loss import loss_fn
from gpt2_jax.model import init_params
from gpt2_jax.train.optimizer import OptimizerConfig, decay_mask, learning_rate_schedule, make_optimizer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CFG = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=211, n_positions=32, attention="xla")
SEQ, ROWS = 16, 4


def _params(seed=0):
    """Random weights with non-trivial LayerNorms and biases (init sets them to 1 and 0)."""
    params = init_params(CFG, jax.random.key(seed))
    flat = traverse_util.flatten_dict(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(flat))
    for k, (path, x) in zip(keys, sorted(flat.items())):
        if path[-1] in ("bias", "scale"):
            flat[path] = x + 0.1 * jax.random.normal(k, x.shape, x.dtype)
    return traverse_util.unflatten_dict(flat)


def _torch_model(params):
    hf = transformers.GPT2Config(**{k: v for k, v in interop.hf_config_from_cfg(CFG).items()
                                    if k not in ("architectures", "dtype")}, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(hf)
    sd = {k: torch.from_numpy(v) for k, v in interop.params_to_hf_state_dict(params, CFG).items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(k == "lm_head.weight" or k.endswith(".attn.bias") for k in missing), missing
    model.tie_weights()
    return model.float().eval()  # eval(): no dropout (and CFG has none)


def _tokens(seed):
    """[ROWS, SEQ + 1] ids: inputs are the first SEQ, targets the last SEQ."""
    return np.random.default_rng(seed).integers(0, CFG.vocab_size, (ROWS, SEQ + 1), dtype=np.int32)


def _jax_batch(tokens):
    return {"inputs": jnp.asarray(tokens[:, :-1]), "targets": jnp.asarray(tokens[:, 1:])}


def _torch_loss(model, tokens):
    """HF's own loss: labels = input ids (shifted inside); the last position's logits are unused."""
    ids = torch.from_numpy(tokens.astype(np.int64))
    return model(input_ids=ids, labels=ids).loss


def _jax_grad(params, tokens):
    return jax.grad(lambda p: loss_fn(p, _jax_batch(tokens), CFG)[0])(params)


def _torch_grads_as_params(model):
    """The torch .grad of every weight, in our param layout (wte's includes the tied lm_head's)."""
    grads = {k: p.grad.detach().numpy() for k, p in model.named_parameters() if k != "lm_head.weight"}
    return interop.hf_state_dict_to_params(grads, CFG, source="torch grads")


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


def test_every_gradient_equals_transformers():
    params, tokens = _params(), _tokens(0)
    model = _torch_model(params)
    loss = _torch_loss(model, tokens)
    loss.backward()
    ours, _ = loss_fn(params, _jax_batch(tokens), CFG)
    assert float(ours) == pytest.approx(loss.item(), rel=1e-6)
    want = traverse_util.flatten_dict(_torch_grads_as_params(model))
    got = traverse_util.flatten_dict(_jax_grad(params, tokens))
    assert set(got) == set(want) and len(got) == 16
    errors = {"/".join(k): _rel(got[k], want[k]) for k in want}
    assert all(np.linalg.norm(np.asarray(want[k])) > 0 for k in want)  # every tensor really gets a gradient
    print(f"gradient parity: max norm-relative error {max(errors.values()):.2e} ({max(errors, key=errors.get)})")
    assert max(errors.values()) < 1e-4, errors


OPT = OptimizerConfig(peak_lr=3e-3, warmup_steps=2, decay_steps=5, min_lr_ratio=0.1, b1=0.9, b2=0.95, eps=1e-8,
                      weight_decay=0.1, grad_clip=0.5)
STEPS = 5


def _torch_optimizer(model, cfg: OptimizerConfig, total_steps: int):
    """AdamW + LambdaLR mirroring gpt2_jax.train.optimizer: decay only the Dense kernels (HF Conv1D
    .weight of c_attn/c_proj/c_fc; wte/wpe only with decay_embeddings), lr = peak · lambda(step)
    where lambda is optax's warmup_cosine_decay_schedule written out by hand."""
    decay = [p for k, p in model.named_parameters()
             if k.endswith(".weight") and (".attn." in k or ".mlp." in k)]
    no_decay = [p for k, p in model.named_parameters()
                if k != "lm_head.weight" and all(p is not q for q in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.peak_lr, betas=(cfg.b1, cfg.b2), eps=cfg.eps)
    decay_steps = cfg.decay_steps or total_steps
    warmup = min(cfg.warmup_steps, max(decay_steps - 1, 0))

    def factor(step):  # optax: linear 0 -> 1 over warmup, cosine 1 -> min_lr_ratio until decay_steps
        if step < warmup:
            return step / warmup
        t = min(step - warmup, decay_steps - warmup) / (decay_steps - warmup)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    sizes = tuple(sum(p.numel() for p in group) for group in (decay, no_decay))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor), sizes


@pytest.mark.parametrize("grads", ["each_own", "same"])
def test_adamw_five_steps_equal_torch(grads):
    """Each framework trains 5 steps on the same batches. `each_own`: each uses its own gradients
    (the whole training step agrees); `same`: torch is fed our gradients, so only the optimizers
    (clip, AdamW, decay mask, schedule) are compared, and they must agree 10x tighter on the updates."""
    params = _params(seed=3)
    model = _torch_model(params)
    opt, sched, (n_decay, n_no_decay) = _torch_optimizer(model, OPT, STEPS)
    mask = traverse_util.flatten_dict(decay_mask(params, OPT.decay_embeddings))
    flat = traverse_util.flatten_dict(params)
    ours = tuple(sum(flat[k].size for k in mask if mask[k] == decayed) for decayed in (True, False))
    assert (n_decay, n_no_decay) == ours and sum(mask.values()) == 4  # the same elements decay in both
    # the torch schedule really is the project's
    sched_jax = learning_rate_schedule(OPT, STEPS)
    assert [OPT.peak_lr * sched.lr_lambdas[0](s) for s in range(STEPS + 2)] == pytest.approx(
        [float(sched_jax(s)) for s in range(STEPS + 2)], rel=1e-6, abs=1e-12)

    tx = make_optimizer(OPT, STEPS)
    state = tx.init(params)

    @jax.jit
    def step(params, state, batch):
        g = jax.grad(lambda p: loss_fn(p, batch, CFG)[0])(params)
        updates, state = tx.update(g, state, params)
        return jax.tree.map(jnp.add, params, updates), state, g

    named = dict(model.named_parameters())
    start = traverse_util.flatten_dict(params)
    worst_param, worst_update = 0.0, 0.0
    for i in range(STEPS):
        tokens = _tokens(100 + i)
        params, state, g = step(params, state, _jax_batch(tokens))
        opt.zero_grad()
        if grads == "same":
            for k, v in interop.params_to_hf_state_dict(g, CFG).items():
                named[k].grad = torch.from_numpy(v).clone()
        else:
            _torch_loss(model, tokens).backward()
        tnorm = torch.nn.utils.clip_grad_norm_(list(model.parameters()), OPT.grad_clip)
        gnorm = float(jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(g))))
        assert float(tnorm) == pytest.approx(gnorm, rel=1e-5) and gnorm > OPT.grad_clip  # clipping bites
        opt.step()
        sched.step()
        want = traverse_util.flatten_dict(interop.hf_state_dict_to_params(
            {k: v.detach().numpy() for k, v in model.state_dict().items()}, CFG, source="torch"))
        got = traverse_util.flatten_dict(params)
        for k in want:
            name = "/".join(k)
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=f"step {i + 1} {name}")
            worst_param = max(worst_param, float(np.max(np.abs(np.asarray(got[k]) - want[k]))))
            moved = np.asarray(want[k]) - np.asarray(start[k])
            if i > 0:  # step 1 has lr 0 (warmup starts at 0): nothing moves yet
                assert np.linalg.norm(moved) > 0, name
                worst_update = max(worst_update, _rel(np.asarray(got[k]) - np.asarray(start[k]), moved))
    print(f"adamw parity ({grads} grads): max |param diff| {worst_param:.2e}, "
          f"max norm-relative update diff {worst_update:.2e}")
    assert worst_update < (1e-4 if grads == "same" else 1e-3)
