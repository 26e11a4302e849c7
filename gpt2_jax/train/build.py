"""A training run assembled once from its TrainConfig: the layout (mesh + rules), the model and
optimizer, the state and batch shardings and the jitted steps. `train.loop` runs it on data;
`train.aot` compiles it on abstract inputs. Checks that can fail before compiling raise
ConfigErrors here."""
from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import tempfile
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax
from etils import epath
from jax.sharding import Mesh, NamedSharding

from gpt2_jax import sharding
from gpt2_jax.config import GPT2Config
from gpt2_jax.distributed import sync
from gpt2_jax.errors import ConfigError
from gpt2_jax.sharding import Layout
from gpt2_jax.train import step as step_lib
from gpt2_jax.train.config import TrainConfig
from gpt2_jax.train.optimizer import learning_rate_schedule, make_optimizer

TOKENIZER_DIR = "tokenizer"
CHAR_VOCAB = "char_vocab.json"


def layout(config: TrainConfig, devices: Sequence[jax.Device] | None = None) -> Layout:
    """The (data, fsdp, tensor) mesh of config.mesh over all devices and the config's rules."""
    m = config.mesh
    return Layout(sharding.make_mesh(m.data, m.fsdp, m.tensor, devices=devices), config.logical_axis_rules)


def check_batch(config: TrainConfig, dp: int) -> None:
    """Each step's microbatch and the eval batch must split over the `dp` data-parallel ways."""
    b, accum = config.batch_size, config.grad_accum_steps
    if config.micro_batch_size % dp:
        raise ConfigError(f"batch_size={b}{f' / grad_accum_steps={accum}' if accum > 1 else ''} = "
                          f"{config.micro_batch_size} rows per step is not divisible by the data-parallel size {dp} "
                          f"(mesh data×fsdp); use a batch_size that is a multiple of {dp * accum}.")
    if config.eval_rows % dp:
        raise ConfigError(f"eval_batch_size={config.eval_rows} is not divisible by the data-parallel size {dp}; "
                          f"use a multiple of {dp}.")


@dataclasses.dataclass(frozen=True)
class Run:
    """The pieces of one run that do not depend on data or state."""
    config: TrainConfig
    layout: Layout
    model: GPT2Config
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    state_shardings: step_lib.TrainState
    batch_sharding: NamedSharding

    @functools.cached_property
    def train_step(self):
        """The jitted train step (state donated)."""
        c = self.config
        step = step_lib.make_train_step(self.model, self.optimizer, self.schedule, grad_accum_steps=c.grad_accum_steps,
                                        seed=c.seed, layout=self.layout)
        return step_lib.jit_train_step(step, self.state_shardings, self.batch_sharding)

    @functools.cached_property
    def eval_step(self):
        return step_lib.jit_eval_step(step_lib.make_eval_step(self.model, self.layout), self.state_shardings.params,
                                      self.batch_sharding)

    def abstract_state(self) -> step_lib.TrainState:
        """The state as ShapeDtypeStructs carrying their target shardings (restore, AOT lowering)."""
        return step_lib.with_shardings(step_lib.abstract_state(self.model, self.optimizer), self.state_shardings)

    def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
        shape = (self.config.batch_size, self.config.seq_len)
        return {k: jax.ShapeDtypeStruct(shape, jnp.int32, sharding=self.batch_sharding) for k in ("inputs", "targets")}

    def init_state(self, key: jax.Array) -> step_lib.TrainState:
        init = jax.jit(functools.partial(step_lib.init_state, self.model, self.optimizer),
                       out_shardings=self.state_shardings)
        return init(key)

    @property
    def opt_state_layout(self) -> str:
        """The optimizer state's tree structure, saved with checkpoints to refuse a mismatched resume."""
        return str(jax.tree.structure(step_lib.abstract_state(self.model, self.optimizer).opt_state))


def assemble(config: TrainConfig, vocab_size: int, devices: Sequence[jax.Device] | None = None) -> Run:
    """The run of `config` for a tokenizer of `vocab_size` ids over `devices` (default: all)."""
    lay = layout(config, devices)
    check_batch(config, lay.data_parallel_size)
    model_cfg = config.model_config(vocab_size)
    optimizer = make_optimizer(config.optimizer, config.total_steps)
    schedule = learning_rate_schedule(config.optimizer, config.total_steps)
    return Run(config, lay, model_cfg, optimizer, schedule,
               step_lib.state_shardings(model_cfg, optimizer, lay), lay.batch_sharding())


def tokenizer(config: TrainConfig, workdir: str | epath.PathLike):
    """(Tokenizer, spec saved with checkpoints). With data.tokenizer_vocab_size > 0, a sentencepiece
    BPE of that size is trained once on the corpus files into WORKDIR/tokenizer/ (small corpora:
    a 50k vocabulary would dominate a tiny model's compute); its spec is workdir-relative."""
    from gpt2_jax.tokenizer import Tokenizer
    d = config.data
    size = d.tokenizer_vocab_size
    if d.tokenizer == "char":
        return _char_tokenizer(config, epath.Path(workdir))
    if size <= 0:
        return Tokenizer.load(d.tokenizer), d.tokenizer
    from gpt2_jax.data import sources
    rel = f"{TOKENIZER_DIR}/sp_bpe_{size}.model"
    path = epath.Path(workdir) / rel
    if jax.process_index() == 0 and not path.exists():
        src = sources.resolve_source(d, d.data_dir)
        if src.kind != "files":
            raise ConfigError(f"data.tokenizer_vocab_size={size} trains a tokenizer on text files, but "
                              f"data.source={d.source!r} is {src.kind}; set tokenizer_vocab_size=0 and "
                              "data.tokenizer to a trained model.")
        for f in src.files:  # the data pipeline's clear errors for empty or malformed files
            next(iter(sources.iter_file_documents(f, d)), None)
        with tempfile.TemporaryDirectory() as local:  # sentencepiece writes local files only (workdir may be gs://)
            Tokenizer.train_sentencepiece([str(f) for f in src.files], f"{local}/sp", vocab_size=size, num_threads=1)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f"tmp_{path.name}"
            tmp.write_bytes(pathlib.Path(f"{local}/sp.model").read_bytes())
        tmp.rename(path)  # atomic on a local disk: readers never see a partial file
    sync("tokenizer_trained")  # the others read what process 0 wrote (a barrier, not a collective)
    return Tokenizer.load(str(path)), f"workdir:{rel}"


def _char_tokenizer(config: TrainConfig, workdir: epath.Path):
    """data.tokenizer="char": nanoGPT's sorted characters of the whole corpus (train and validation
    text, as shakespeare_char/prepare.py), built once into WORKDIR/tokenizer/char_vocab.json and read
    from there on resume, eval and sampling."""
    from gpt2_jax.data import sources
    from gpt2_jax.tokenizer import Tokenizer
    d = config.data
    rel = f"{TOKENIZER_DIR}/{CHAR_VOCAB}"
    path = workdir / rel
    if jax.process_index() == 0 and not path.exists():
        src = sources.resolve_source(d, d.data_dir)
        if src.kind == "tokens":
            raise ConfigError(f"data.tokenizer='char' builds its vocabulary from text, but data.source={d.source!r} "
                              "holds token ids; use a text source or the tokenizer the shards were made with.")
        Tokenizer.build_char(sources.iter_documents(src, d), path, source=d.source)
    sync("tokenizer_trained")  # the others read what process 0 wrote (a barrier, not a collective)
    return Tokenizer.from_char_vocab(path), f"workdir:{rel}"


def vocab_size_without_data(config: TrainConfig) -> int:
    """The model's vocabulary without reading any corpus: explicit, trained-BPE size, or tokenizer's."""
    if config.model.vocab_size:
        return config.model.vocab_size
    if config.data.tokenizer_vocab_size:
        return config.data.tokenizer_vocab_size
    if config.data.tokenizer == "char":
        raise ConfigError("data.tokenizer='char' sizes the vocabulary from the corpus, which compiling without "
                          "data does not read; set model.vocab_size (characters + 1, e.g. 66 for Tiny "
                          "Shakespeare).")
    from gpt2_jax.tokenizer import Tokenizer
    return Tokenizer.load(config.data.tokenizer).vocab_size


def describe_mesh(m: Mesh) -> str:
    return " × ".join(f"{k}={v}" for k, v in m.shape.items()) + f" ({math.prod(m.shape.values())} devices)"


def meta(run: Run, tokenizer_spec: str) -> dict[str, Any]:
    """The JSON description saved beside every checkpoint."""
    return {"model_config": run.model.to_dict(), "tokenizer": tokenizer_spec, "experiment": run.config.name,
            "seq_len": run.config.seq_len, "opt_state_layout": run.opt_state_layout}
