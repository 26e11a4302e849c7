"""Train a named experiment:  python -m experiments.main --experiment=NAME --workdir=DIR [--config.key=value ...]

  --list                        list experiments
  --tpu=v4-32                   use the experiment's mesh preset for a TPU slice
  --mode=job                    train, run eval_after_training, sample, write WORKDIR/report.md
  --mode=aot                    compile the step for the configured mesh, print per-device memory
  --coordinator_address=H:P --num_processes=N --process_id=I   multi-process (auto on Cloud TPU)
  --heartbeat_timeout=S         multi-process: the others stop within S s when one process dies
User mistakes print one line and exit with status 2; a run stopped by a non-finite loss exits with 1."""
from __future__ import annotations

import argparse
import json
import sys

PROG = "python -m experiments.main"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.main", description=__doc__.split("\n")[0],
                                epilog="Any --config.KEY=VALUE overrides a config field.")
    p.add_argument("--experiment", default="tiny_shakespeare")
    p.add_argument("--workdir", help="default runs/EXPERIMENT")
    p.add_argument("--list", action="store_true")
    p.add_argument("--mode", choices=("job", "train", "aot"), default="job",
                   help="job (default): train, evaluate, sample, write WORKDIR/report.md; train: only train")
    p.add_argument("--tpu", default="")
    p.add_argument("--hbm_gb", type=float, default=0.0, help="per-device memory for --mode=aot")
    p.add_argument("--coordinator_address", default="")
    p.add_argument("--num_processes", type=int, default=0)
    p.add_argument("--process_id", type=int, default=-1)
    p.add_argument("--heartbeat_timeout", type=int, default=30,
                   help="multi-process: seconds of silence after which a process counts as dead and the others exit 1")
    args, rest = p.parse_known_args(argv)
    from gpt2_jax.cli import report_errors
    return report_errors(lambda: _run(args, rest), prog=PROG)


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    from experiments import registry
    from gpt2_jax import host
    from gpt2_jax.errors import UserError

    if args.list:
        print(registry.describe())
        return 0
    bad = [r for r in rest if not r.startswith("--config.")]
    if bad:
        raise UserError(f"unknown argument {bad[0]!r}; overrides look like --config.KEY=VALUE (see --help).")
    config = registry.get_config(args.experiment, args.tpu, rest)
    train_config, job = registry.split(config)  # the one boundary: typed configs from here on
    if args.mode == "aot":
        from gpt2_jax.train import aot
        print(aot.format_report(aot.compile_train_step(train_config, args.hbm_gb)))
        return 0
    workdir = args.workdir or f"runs/{args.experiment}"
    from gpt2_jax import distributed
    distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                           heartbeat_timeout=args.heartbeat_timeout)
    host.keep_freed_memory()  # after jax.distributed (it asks JAX for its backend): fewer CPU page faults
    if args.mode == "job":
        from experiments import job as job_lib
        summary = job_lib.run(train_config, workdir, job)
    else:
        from gpt2_jax.train import loop
        summary = loop.train(train_config, workdir)
    print("summary " + json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
