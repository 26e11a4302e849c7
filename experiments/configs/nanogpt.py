"""nanoGPT's character-level Shakespeare recipes (karpathy/nanoGPT): `shakespeare_char` is
config/train_shakespeare_char.py (val loss 1.4697 in nanoGPT's README), `shakespeare_char_cpu` the
README's CPU variant of it (about 1.88, ~3 minutes on a laptop):

  python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
    --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
    --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

Data as data/shakespeare_char/prepare.py: the sorted characters of Tiny Shakespeare as the
vocabulary, its first 90% trains and the last 10% validates; batches as train.py's get_batch
(random offsets) and the val loss as its estimate_loss (the mean over eval_iters random batches).
Where this differs from nanoGPT: our blocks have biases (nanoGPT's train.py default is bias=False);
the vocabulary has one id more (`<|endoftext|>`, which the pipeline writes once after the file);
the eval batches are the same at every eval (nanoGPT draws new ones); nanoGPT's warmup is
lr*(it+1)/(warmup+1), ours optax's linear warmup from 0."""
from __future__ import annotations

import ml_collections

from experiments.configs import base


def shakespeare_char() -> ml_collections.ConfigDict:
    """config/train_shakespeare_char.py: 10.7M parameters, 5000 iters of 64×256 characters."""
    config = base.get_config()
    config.model.name = "custom"
    config.model.n_layer = 6
    config.model.n_head = 6
    config.model.n_embd = 384
    config.model.dropout = 0.2
    config.model.n_positions = 0          # = seq_len (block_size 256)
    config.model.vocab_size = 0           # = the characters + 1 (66 for Tiny Shakespeare; nanoGPT: 65)
    config.data.source = "tinyshakespeare"
    config.data.tokenizer = "char"        # prepare.py: chars = sorted(set(data))
    config.data.windows = "random"        # get_batch: torch.randint(len(data) - block_size, (batch_size,))
    config.data.val_fraction = 0.1        # prepare.py: data[:int(n*0.9)] trains, the rest validates
    config.seq_len = 256                  # block_size
    config.batch_size = 64
    config.grad_accum_steps = 1           # gradient_accumulation_steps = 1
    config.total_steps = 5000             # max_iters
    config.seed = 1337                    # train.py's torch.manual_seed(1337 + seed_offset) (other RNGs)
    config.dtype = "float32"
    config.optimizer.peak_lr = 1e-3       # learning_rate
    config.optimizer.min_lr_ratio = 0.1   # min_lr = 1e-4
    config.optimizer.warmup_steps = 100   # warmup_iters
    config.optimizer.decay_steps = 5000   # lr_decay_iters
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.99            # beta2 = 0.99 ("make a bit bigger because number of tokens per iter is small")
    config.optimizer.weight_decay = 0.1
    config.optimizer.decay_embeddings = True  # nanoGPT decays every 2-D parameter, wte/wpe included
    config.optimizer.grad_clip = 1.0
    config.eval_every = 250               # eval_interval
    config.eval_batches = 200             # eval_iters
    config.eval_batch_size = 0            # = batch_size, as estimate_loss's get_batch
    config.log_every = 10                 # log_interval
    config.checkpoint_every = 250
    config.keep_checkpoints = 2
    config.job.prompts = ["\n"]           # sample.py's default start
    return config


def shakespeare_char_cpu() -> ml_collections.ConfigDict:
    """The README's CPU variant: 0.8M parameters, 2000 iters of 12×64 characters, no dropout."""
    config = shakespeare_char()
    config.model.n_layer = 4
    config.model.n_head = 4
    config.model.n_embd = 128
    config.model.dropout = 0.0
    config.seq_len = 64                   # --block_size=64
    config.batch_size = 12
    config.total_steps = 2000             # --max_iters=2000
    config.optimizer.decay_steps = 2000   # --lr_decay_iters=2000
    config.eval_batches = 20              # --eval_iters=20
    config.log_every = 50                 # --log_interval=1 only prints; every step would sync the host
    config.checkpoint_every = 500
    return config
