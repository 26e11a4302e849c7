"""Fine-tuning a released checkpoint: `finetune_shakespeare`, nanoGPT's
config/finetune_shakespeare.py (GPT-2 BPE on Tiny Shakespeare, batch 1 × 32 accumulated
microbatches of 1024 tokens, a constant lr of 3e-5 for 20 iterations, eval on a 10% split).
nanoGPT starts from gpt2-xl; issue #12 asks for gpt2 (124M), which a CPU can step through.
Without a network, point init_from at a local copy: --config.init_from=/path/to/hf_or_openai_dir."""
from __future__ import annotations

import ml_collections

from experiments.configs import base


def finetune_shakespeare() -> ml_collections.ConfigDict:
    config = base.get_config()
    config.init_from = "gpt2"             # nanoGPT: gpt2-xl; downloaded once into $GPT2_JAX_CACHE
    config.model.name = "gpt2"            # must match the checkpoint (n_positions 1024, vocab 50257)
    config.model.dropout = 0.0            # nanoGPT's default for fine-tuning
    config.data.source = "tinyshakespeare"
    config.data.tokenizer = "gpt2"        # GPT-2 BPE, as nanoGPT's data/shakespeare/prepare.py (tiktoken gpt2)
    config.data.tokenizer_vocab_size = 0
    config.data.val_fraction = 0.1        # nanoGPT's 90/10 train/val split
    config.seq_len = 1024                 # block_size 1024
    config.batch_size = 32                # batch_size 1 × gradient_accumulation_steps 32 ...
    config.grad_accum_steps = 32          # ... (on N devices: grad_accum_steps=32/N, microbatches split over them)
    config.total_steps = 20               # max_iters
    config.optimizer.peak_lr = 3e-5       # learning_rate, constant (decay_lr = False):
    config.optimizer.warmup_steps = 0
    config.optimizer.min_lr_ratio = 1.0
    config.optimizer.b2 = 0.95            # nanoGPT's train.py defaults: betas (0.9, 0.95), wd 0.1, clip 1.0
    config.optimizer.weight_decay = 0.1
    config.optimizer.grad_clip = 1.0
    config.dtype = "float32"
    config.log_every = 1
    config.eval_every = 5                 # eval_interval 5 ...
    config.eval_batches = 5               # ... eval_iters 40 sequences = 5 batches of 8
    config.eval_batch_size = 8
    config.checkpoint_every = 20          # nanoGPT saves only an improving val loss; here the last step
    config.keep_checkpoints = 1
    config.job.prompts = ["ROMEO:", "JULIET:"]
    return config
