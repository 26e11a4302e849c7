"""lm-evaluation-harness backend: `GPT2JaxLM`, registered with lm-eval as model `gpt2_jax`.

    python -m gpt2_jax.harness --model gpt2_jax --model_args checkpoint=PATH --tasks lambada_openai
    lm_eval.simple_evaluate(model=GPT2JaxLM(checkpoint=PATH), tasks=[...])    # after import gpt2_jax.harness
    gpt2_jax.harness.evaluate(PATH, ["lambada_openai"], include_path=DIR)   # = gpt2-jax eval --harness-tasks

Log-likelihoods go through the evals' own `Scorer` (batched and sharded over a `Layout`; requests
that share a context, e.g. a multiple-choice question's answers, are packed around one copy of it)
and generation through `generate` (the KV-cache decoder), with the rules of lm-eval's `hf` model so
the numbers match it: no BOS, an empty context is the end-of-text token, contexts are left-truncated
to `max_length` (+ 1 scored token), rolling windows are lm-eval's disjoint windows, and generations
stop at end-of-text or the first `until` string. A continuation longer than the context, or
`max_gen_toks >= max_length`, is an InputError (hf asserts).

lm-eval 0.4.13 has no model plugins: its own `lm_eval` command only knows the models it ships, so
`lm_eval --model gpt2_jax` fails; `python -m gpt2_jax.harness` is that command with this model
registered (upstream added plugin registration after 0.4.13, EleutherAI/lm-evaluation-harness#4013).
Every process of a multi-process run evaluates every request (rank 0 of world size 1 to lm-eval):
the batches are split over the devices of all processes instead. `evaluate` writes its output from
process 0 only; lm-eval's command writes `--output_path` from every process, so give each its own.
"""
from __future__ import annotations

import difflib
import json
import os
import pathlib
import sys
from typing import Any, Sequence

from gpt2_jax.extras import require

_FEATURE = "the lm-evaluation-harness backend (gpt2_jax.harness)"
require("lm_eval", extra="harness", feature=_FEATURE)

import jax  # noqa: E402
import lm_eval.models  # noqa: E402,F401  registers lm-eval's own models first (see _register)
from lm_eval import utils as lm_utils  # noqa: E402
from lm_eval.api.model import TemplateLM  # noqa: E402
from lm_eval.api.registry import model_registry  # noqa: E402
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs  # noqa: E402

from gpt2_jax import distributed  # noqa: E402
from gpt2_jax.errors import DataError, InputError, log_once, report_errors  # noqa: E402
from gpt2_jax.evals.runner import checkpoint_tokenizer  # noqa: E402
from gpt2_jax.evals.scoring import Scorer, rolling_requests  # noqa: E402
from gpt2_jax.generate import generate  # noqa: E402
from gpt2_jax.sharding import Layout  # noqa: E402

NAME = "gpt2_jax"
PROG = "python -m gpt2_jax.harness"
# gen_kwargs the decoder implements; anything else would be silently ignored, so it is refused.
_GEN_KEYS = {"until", "max_gen_toks", "do_sample", "temperature", "top_k", "top_p"}
_NO_OPS = {"num_beams": 1, "num_return_sequences": 1, "repetition_penalty": 1.0}


def _int_arg(name: str, value: Any, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, str) and value.startswith("auto"):
        log_once(f"gpt2_jax harness: {name}={value!r} is not searched for; using {default}.")
        return default
    try:
        out = int(value)
    except (TypeError, ValueError):
        out = 0
    if out < 1 or isinstance(value, bool):
        raise InputError(f"{name}={value!r} must be a positive integer.")
    return out


class GPT2JaxLM(TemplateLM):
    """A gpt2_jax model as an lm-eval LM.

    checkpoint: anything gpt2_jax.load_checkpoint takes (HF dir, OpenAI dir, training workdir,
        released name), or a (params, cfg) tuple from Python.
    batch_size: sequences scored / decoded at once (rounded up to the data-parallel ways).
    max_length: context length (default and maximum: the model's n_positions).
    max_gen_toks: generation length when a request gives none (lm-eval's default 256).
    tokenizer: a Tokenizer or Tokenizer.load spec (default: the checkpoint's, else GPT-2's BPE
        from data_dir / $GPT2_JAX_DATA_DIR).
    seed: sampling seed; gen_chunk: tokens decoded per round before stop strings are checked.
    share_prefix: pack requests with equal contexts around one copy (False: score each alone).
    layout: the mesh (default: every device of every process, data-parallel).
    batch_size/max_batch_size/device are also what lm-eval's CLI passes; device is ignored (JAX
    places arrays on the layout's devices)."""

    def __init__(self, checkpoint: Any = None, batch_size: Any = 8, max_batch_size: Any = None,
                 device: Any = None, max_length: Any = None, max_gen_toks: Any = 256, tokenizer: Any = None,
                 data_dir: Any = None, seed: Any = 0, gen_chunk: Any = 64, share_prefix: Any = True,
                 progress: Any = False, layout: Layout | None = None, **unknown: Any):
        super().__init__()
        # lm-eval bootstraps stderrs in a forked multiprocessing Pool; forking a process that runs
        # JAX's threads can deadlock, so ask it for its in-process bootstrap instead.
        os.environ.setdefault("DISABLE_MULTIPROC", "1")
        if unknown:
            raise InputError(f"unknown gpt2_jax model_args {sorted(unknown)}; accepted: checkpoint, batch_size, "
                             "max_length, max_gen_toks, tokenizer, data_dir, seed, gen_chunk, share_prefix, progress "
                             "(e.g. --model_args checkpoint=gpt2,max_gen_toks=128 --batch_size 16).")
        if checkpoint is None:
            raise InputError("the gpt2_jax model needs checkpoint=PATH (an HF dir, OpenAI dir, training workdir or "
                             "released name), e.g. --model_args checkpoint=gpt2.")
        if isinstance(checkpoint, tuple) and len(checkpoint) == 2:
            params, cfg = checkpoint
        else:
            from gpt2_jax.interop import load_checkpoint
            params, cfg = load_checkpoint(str(checkpoint))
        self.checkpoint = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else "(params, cfg)"
        self.cfg = cfg
        self.tokenizer = checkpoint_tokenizer(tokenizer, checkpoint if not isinstance(checkpoint, tuple) else None,
                                              data_dir)
        self._max_length = _int_arg("max_length", max_length, cfg.n_positions)
        if self._max_length > cfg.n_positions:
            raise InputError(f"max_length={self._max_length} exceeds the model's context n_positions="
                             f"{cfg.n_positions}; omit it or pass at most {cfg.n_positions}.")
        self._max_gen_toks = _int_arg("max_gen_toks", max_gen_toks, 256)
        self.gen_chunk = _int_arg("gen_chunk", gen_chunk, 64)
        try:
            self.seed = int(seed)
        except (TypeError, ValueError):
            raise InputError(f"seed={seed!r} must be an integer.") from None
        self._calls = 0
        if device not in (None, "cpu") and not str(device).startswith("cuda"):
            log_once(f"gpt2_jax harness: device={device!r} is ignored; JAX uses the layout's devices.")
        self.scorer = Scorer(params, cfg, batch_size=_int_arg("batch_size", batch_size, 8), layout=layout,
                             share_prefix=str(share_prefix).lower() not in ("false", "0", "no"),
                             progress=str(progress).lower() in ("true", "1", "yes"))

    # ------------------------------------------------------------------ what lm-eval asks about
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eot_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def batch_size(self) -> int:
        return self.scorer.batch_size

    def get_model_info(self) -> dict[str, Any]:
        from gpt2_jax.model import count_params
        return {"model": str(self.checkpoint), "model_num_parameters": count_params(self.scorer.params),
                "model_dtype": self.cfg.dtype, "devices": int(self.scorer.layout.mesh.devices.size)}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """GPT-2 BPE ids with `<|endoftext|>` as the special token (as HF's tokenizer); no BOS."""
        return self.tokenizer.encode(string, allow_special=True)

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode([int(t) for t in tokens if int(t) != self.eot_token_id])

    # ------------------------------------------------------------------ scoring
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """(sum log p, all greedy) of each (strings, context ids, continuation ids): the model reads
        the last max_length tokens of context + continuation[:-1]."""
        seqs = []
        for i, (_, ctx, cont) in enumerate(requests):
            if not cont:
                raise InputError(f"loglikelihood request {i} has an empty continuation; there is nothing to score.")
            if len(cont) > self.max_length:
                raise InputError(f"loglikelihood request {i}: the continuation has {len(cont)} tokens, more than the "
                                 f"model's context max_length={self.max_length}; shorten it (contexts are truncated "
                                 "from the left, continuations cannot be).")
            seqs.append(((list(ctx) + list(cont))[-(self.max_length + 1):], len(cont)))
        return [(float(s.logp.sum()), bool(s.greedy.all())) for s in self.scorer.score(seqs, desc="loglikelihood")]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Total log p of each string over lm-eval's disjoint max_length windows, the first one
        conditioned on end-of-text."""
        windows, owner = [], []
        for i, string in enumerate(r.args[0] for r in requests):
            for seq, n in rolling_requests(self.tok_encode(string), self.prefix_token_id, self.max_length,
                                           self.max_length):
                windows.append((seq, n))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, s in zip(owner, self.scorer.score(windows, desc="loglikelihood_rolling") if windows else []):
            totals[i] += float(s.logp.sum())
        return totals

    # ------------------------------------------------------------------ generation
    def _gen_options(self, gen_kwargs: dict) -> dict[str, Any]:
        kw = dict(normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks))
        for key, neutral in _NO_OPS.items():
            if key in kw and kw[key] == neutral:
                kw.pop(key)
        unknown = sorted(set(kw) - _GEN_KEYS)
        if unknown:
            raise InputError(f"generation kwargs {unknown} are not supported by the gpt2_jax model; it implements "
                             f"{sorted(_GEN_KEYS)} (greedy, temperature, top-k, top-p).")
        max_gen = int(kw["max_gen_toks"])
        if not 1 <= max_gen < self.max_length:
            raise InputError(f"max_gen_toks={max_gen} must be in [1, max_length={self.max_length}): the prompt "
                             f"keeps its last max_length - max_gen_toks tokens; lower max_gen_toks.")
        sample = bool(kw.get("do_sample")) and float(kw.get("temperature") or 0.0) > 0.0
        if kw.get("do_sample") and not sample:
            log_once("gpt2_jax harness: do_sample=True with temperature 0 decodes greedily.")
        top_k = kw.get("top_k")
        until = handle_stop_sequences(kw["until"], eos=self.tokenizer.decode([self.eot_token_id]))
        return {"until": [u for u in until if u],
                "max_gen": max_gen, "temperature": float(kw["temperature"]) if sample else 0.0,
                "top_k": int(top_k) if sample and top_k else None,
                "top_p": float(kw["top_p"]) if sample and kw.get("top_p") is not None else None}

    def _generate(self, prompts: list[list[int]], opts: dict[str, Any]) -> list[str]:
        """Decode every prompt until end-of-text, a stop string or max_gen tokens, `gen_chunk`
        tokens per round (rows that stopped drop out); the text before the first stop string."""
        until, max_gen = opts["until"], opts["max_gen"]
        keep = self.max_length - max_gen
        rows = [(p[-keep:] if p else [self.eot_token_id]) for p in prompts]
        new: list[list[int]] = [[] for _ in rows]
        live = list(range(len(rows)))
        self._calls += 1
        rng = jax.random.fold_in(jax.random.key(self.seed), self._calls)
        for rnd in range(max_gen):
            if not live:
                break
            n = min(self.gen_chunk, max_gen - min(len(new[i]) for i in live))
            outs = generate(self.scorer.params, self.cfg, [rows[i] + new[i] for i in live], max_new_tokens=n,
                            temperature=opts["temperature"], top_k=opts["top_k"], top_p=opts["top_p"],
                            rng=jax.random.fold_in(rng, rnd), eos_id=self.eot_token_id,
                            layout=self.scorer.layout, batch_size=self.scorer.batch_size)
            still = []
            for i, out in zip(live, outs):
                got = out[len(rows[i]) + len(new[i]):]
                ended = bool(got) and got[-1] == self.eot_token_id
                new[i] += got[:-1] if ended else got
                new[i] = new[i][:max_gen]
                if not ended and len(new[i]) < max_gen and not any(u in self.tok_decode(new[i]) for u in until):
                    still.append(i)
            live = still
        texts = []
        for toks in new:
            text = self.tok_decode(toks)
            cut = min((text.find(u) for u in until if u in text), default=len(text))
            texts.append(text[:cut])
        return texts

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Continuations of each (context, gen_kwargs), grouped by equal gen_kwargs."""
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(json.dumps(r.args[1], sort_keys=True, default=str), []).append(i)
        out: list[str] = [""] * len(requests)
        for idx in groups.values():
            opts = self._gen_options(requests[idx[0]].args[1])
            texts = self._generate([self.tok_encode(requests[i].args[0]) for i in idx], opts)
            for i, t in zip(idx, texts):
                out[i] = t
        return out


def _register() -> None:
    """Register `gpt2_jax` with lm-eval by import path: lm-eval's own models must already be in
    the registry (get_model fills it only while it is empty), and a path entry stays valid when
    this file also runs as __main__ (a second class object under the same name would collide)."""
    if NAME not in model_registry:
        model_registry.register(NAME, target="gpt2_jax.harness:GPT2JaxLM")


_register()


# ----------------------------------------------------------------------------- offline tasks
def offline_tasks(out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Write task YAMLs for lm-eval's `lambada_openai` and `wikitext` that read the official files
    in the data dir (lambada_test.jsonl; wiki.test.raw split into pages) instead of the Hub; returns
    the task names. Each YAML `include:`s the installed upstream YAML and overrides only the dataset
    fields (`dataset_path: json`, absolute `data_files`), so prompts and metrics stay lm-eval's."""
    import lm_eval.tasks

    from gpt2_jax.evals import readers
    from gpt2_jax.evals.lm_ppl import wikitext_documents
    upstream = pathlib.Path(lm_eval.tasks.__file__).parent
    out = pathlib.Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    lambada = readers.resolve("lambada", "test", None, data_dir).resolve()
    pages = wikitext_documents(readers.read_text("wikitext2", None, data_dir))
    wiki = out / "wikitext-2-raw-v1_test.jsonl"
    wiki.write_text("".join(json.dumps({"page": p}, ensure_ascii=False) + "\n" for p in pages), encoding="utf-8")
    for name, include, data, extra in (
            ("lambada_openai", "lambada/lambada_openai.yaml", lambada, ""),
            ("wikitext", "wikitext/wikitext.yaml", wiki, "training_split: null\nvalidation_split: null\n")):
        (out / f"{name}.yaml").write_text(
            f"# lm-eval's {name} read from a local file (written by gpt2_jax.harness.offline_tasks)\n"
            f"include: {upstream / include}\ndataset_path: json\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    test: {data}\n{extra}")
    return ["lambada_openai", "wikitext"]


# ----------------------------------------------------------------------------- running tasks
_TASK_MANAGERS: dict[tuple, Any] = {}


def task_manager(include_path: str | os.PathLike | Sequence | None = None, defaults: bool = True):
    """A cached lm-eval TaskManager over `include_path` (+ lm-eval's own tasks with `defaults`;
    indexing those takes ~16 s, so it happens once per process)."""
    from lm_eval.tasks import TaskManager
    paths = [include_path] if isinstance(include_path, (str, os.PathLike)) else list(include_path or [])
    paths = [str(pathlib.Path(p).expanduser().resolve()) for p in paths]
    for p in paths:
        if not pathlib.Path(p).exists():
            raise DataError(f"harness include path {p} does not exist; pass a directory of task YAMLs.")
    key = (tuple(paths), defaults)
    if key not in _TASK_MANAGERS:
        _TASK_MANAGERS[key] = TaskManager(include_path=paths or None, include_defaults=defaults)
    return _TASK_MANAGERS[key]


def resolve_tasks(tasks: str | Sequence[str], include_path) -> tuple[list[str], Any]:
    """Task names and a TaskManager that knows them all: the include path alone when it has them
    (no 16 s index of lm-eval's tasks), else with lm-eval's tasks; an unknown name is an InputError."""
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    if not names:
        raise InputError("no harness tasks given; pass names such as lambada_openai,wikitext.")
    is_yaml = lambda t: t.endswith(".yaml")
    tm = task_manager(include_path, defaults=False) if include_path else None
    if tm is None or any(not is_yaml(t) and not tm.match_tasks([t]) for t in names):
        tm = task_manager(include_path, defaults=True)
    missing = [t for t in names if (not pathlib.Path(t).is_file() if is_yaml(t) else not tm.match_tasks([t]))]
    if missing:
        hints = {t: difflib.get_close_matches(t, tm.all_tasks, n=3) for t in missing}
        said = "; ".join(f"{t!r}" + (f" (did you mean {', '.join(h)}?)" if h else "") for t, h in hints.items())
        where = f" or in {include_path}" if include_path else ""
        raise InputError(f"unknown harness task(s) {said}: not among lm-eval's {len(tm.all_tasks)} task names{where}. "
                         f"List them with `{PROG} ls tasks`, or pass a task YAML's directory as the include path.")
    return names, tm


_OFFLINE_HINT = ("write a task YAML that includes the upstream one with `dataset_path: json` and local "
                 "`dataset_kwargs.data_files` (README: Harness tasks offline) and pass its directory as the include "
                 "path, or run with network access")


def _data_error(exc: BaseException, names: Sequence[str] = (), tm: Any = None) -> DataError | None:
    """A DataError naming the task whose data could not be loaded, for the errors `datasets` raises
    when a dataset is neither cached nor reachable (None for any other exception)."""
    text = f"{type(exc).__name__}: {exc}"
    offline = ("OfflineModeIsEnabled", "LocalEntryNotFoundError", "Couldn't reach", "couldn't reach",
               "Unable to find", "doesn't exist on the Hub", "DatasetNotFoundError", "EmptyDatasetError")
    if not isinstance(exc, (ConnectionError, OSError, ValueError)) or not any(o in text for o in offline):
        return None
    culprit = None
    for t in names if tm is not None else ():
        try:
            tm.load([t])
        except Exception:  # noqa: BLE001 - only to name the task; the original error is reported
            culprit = t
            break
    which = f"harness task {culprit!r}" if culprit else "a harness task"
    return DataError(f"{which} needs data that is not available here ({text.splitlines()[0][:300]}); "
                     f"{_OFFLINE_HINT}.")


def evaluate(model: Any, tasks: str | Sequence[str], *, include_path: Any = None, limit: int | float | None = None,
             num_fewshot: int | None = None, output: str | os.PathLike | None = None, log_samples: bool = False,
             samples: dict | None = None, gen_kwargs: dict | None = None, bootstrap_iters: int = 100000,
             **model_args: Any) -> dict[str, Any]:
    """lm_eval.simple_evaluate on a gpt2_jax model; returns lm-eval's results dict (every process).

    model: a GPT2JaxLM, or its `checkpoint` (path, released name or (params, cfg)) with `model_args`.
    tasks: lm-eval task names (comma-separated or a list) or task YAML paths; `include_path`: a
        directory (or list) of local task YAMLs, searched before lm-eval's own tasks.
    output: also write the results (without per-sample logs) as JSON there (process 0 only)."""
    names, tm = resolve_tasks(tasks, include_path)
    lm = model if isinstance(model, GPT2JaxLM) else GPT2JaxLM(checkpoint=model, **model_args)
    try:
        results = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=tm, limit=limit, samples=samples,
                                          num_fewshot=num_fewshot, log_samples=log_samples, gen_kwargs=gen_kwargs,
                                          bootstrap_iters=bootstrap_iters)
    except Exception as e:  # noqa: BLE001 - translated only when it is a missing-data error
        err = _data_error(e, names, tm)
        if err is None:
            raise
        raise err from None
    if output is not None and jax.process_index() == 0:
        out = pathlib.Path(output).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        shown = {k: v for k, v in results.items() if k != "samples"}
        out.write_text(json.dumps(shown, indent=2, default=lm_utils.handle_non_serializable) + "\n")
    return results


def table(results: dict[str, Any]) -> str:
    """lm-eval's Markdown table of a results dict."""
    return lm_utils.make_table(results)


def main(argv: Sequence[str] | None = None) -> int:
    """lm-eval's command line with the gpt2_jax model registered (`python -m gpt2_jax.harness`);
    returns the exit status (a UserError: one line, status 2)."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = [PROG, *(sys.argv[1:] if argv is None else argv)]

    def run() -> None:
        try:
            cli_evaluate()
        except ValueError as e:
            if str(e).startswith("Tasks not found"):
                raise InputError(f"{e}: they are neither lm-eval tasks nor YAMLs in --include_path; list the names "
                                 f"with `{PROG} ls tasks`.") from None
            err = _data_error(e)
            if err is None:
                raise
            raise err from None
        except (ConnectionError, OSError) as e:
            err = _data_error(e)
            if err is None:
                raise
            raise err from None
    return report_errors(run, PROG, on_error=distributed.fail_fast)


if __name__ == "__main__":
    sys.exit(main())
