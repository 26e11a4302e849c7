"""Run an experiment on a Cloud TPU VM slice: every host runs the same command and JAX finds its
peers from the TPU metadata (jax.distributed.initialize()); the workdir must be a gs:// bucket all
hosts share. `--dry_run` prints each step's gcloud command (after a `# step: what` line) instead of
running it. The runbook is experiments/README.md ("Pod runbook").

  python -m experiments.launch --tpu_name=gpt2 --zone=us-central2-b --accelerator=v4-32 \\
      --experiment=gpt2_124m --workdir=gs://BUCKET/gpt2_124m --create --dry_run [--config.KEY=VALUE ...]

Steps (--steps, in this order): create the TPU VM (also --create), setup (install this repo on all
workers), train (start the job on all workers in the background, logs in ~/train.log), watch (follow
worker 0's log), preempt (SIGTERM to every worker's job, as a spot preemption does: all save one step
and exit 0), delete. Default: setup,train. Running `train` again, on this slice or on a slice of
another size, resumes from the newest checkpoint in the workdir."""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

DEFAULT_REPO = "https://github.com/OWNER/gpt2_jax.git"  # replace with your fork
RUNTIME = "tpu-ubuntu2204-base"
STEPS = ("create", "setup", "train", "watch", "preempt", "delete")
JOB = "experiments.main"  # what the train step runs and the preempt step signals


def _tpu(args, verb: str, *rest: str) -> list[str]:
    cmd = ["gcloud", "compute", "tpus", "tpu-vm", verb, args.tpu_name, f"--zone={args.zone}", *rest]
    return cmd + ([f"--project={args.project}"] if args.project else [])


def _ssh(args, command: str, worker: str = "all") -> list[str]:
    return _tpu(args, "ssh", f"--worker={worker}", f"--command={command}")


def build_commands(args, overrides: list[str]) -> list[tuple[str, list[str]]]:
    """(what it does, gcloud argv) for each step in args.steps, in order."""
    from experiments import registry
    registry.get_config(args.experiment, args.tpu_preset, overrides)  # fail here, not on the pod
    out = []
    for step in args.steps:
        if step == "create":
            cmd = _tpu(args, "create", f"--accelerator-type={args.accelerator}", f"--version={args.runtime_version}")
            out.append((f"create: a {args.accelerator} TPU VM slice named {args.tpu_name}"
                        + (" (spot: it can be preempted)" if args.spot else ""), cmd + (["--spot"] if args.spot else [])))
        elif step == "setup":
            setup = (f"(test -d gpt2_jax || git clone {shlex.quote(args.repo)} gpt2_jax) && cd gpt2_jax && "
                     f"git fetch -q && git checkout -q {shlex.quote(args.branch)} && git pull -q && "
                     "pip install -q -U 'jax[tpu]' && pip install -q -e '.[train,tf]'")
            out.append(("setup: install this repo on every worker", _ssh(args, setup)))
        elif step == "train":
            # -u: a host that JAX aborts (e.g. when process 0 dies) keeps its last lines in the log
            train = ["python3", "-u", "-m", JOB, f"--experiment={args.experiment}", f"--workdir={args.workdir}"]
            if args.tpu_preset:
                train.append(f"--tpu={args.tpu_preset}")
            train += overrides
            env = f"GPT2_JAX_DATA_DIR={shlex.quote(args.data_dir)} " if args.data_dir else ""
            run = f"cd gpt2_jax && {env}nohup {shlex.join(train)} > ~/train.log 2>&1 &"
            out.append(("train: the same command on every worker, in the background (resumes from the "
                        "workdir's newest checkpoint)", _ssh(args, run)))
        elif step == "watch":
            out.append(("watch: follow worker 0's log (process 0 prints the step lines; Ctrl-C stops watching only)",
                        _ssh(args, "tail -n 40 -F ~/train.log", worker="0")))
        elif step == "preempt":
            out.append(("preempt: SIGTERM to the job on every worker, as a spot preemption does; all processes "
                        "save the same step and exit 0",
                        _ssh(args, "pkill -TERM -f 'experiments[.]main' || true")))  # [.]: not this shell
        elif step == "delete":
            out.append((f"delete: the slice {args.tpu_name} (the workdir in {args.workdir} stays)",
                        _tpu(args, "delete", "--quiet")))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.launch", description=__doc__.split("\n")[0])
    p.add_argument("--tpu_name", required=True)
    p.add_argument("--zone", required=True)
    p.add_argument("--accelerator", required=True, help="slice type, e.g. v4-32, v5p-128, v6e-16")
    p.add_argument("--project", default="")
    p.add_argument("--experiment", required=True)
    p.add_argument("--workdir", required=True, help="gs://BUCKET/PATH shared by all hosts")
    p.add_argument("--data_dir", default="", help="GPT2_JAX_DATA_DIR on the hosts (vocab files)")
    p.add_argument("--repo", default=DEFAULT_REPO)
    p.add_argument("--branch", default="main")
    p.add_argument("--runtime_version", default=RUNTIME)
    p.add_argument("--steps", default="", help=f"comma-separated, from {','.join(STEPS)} (default: setup,train)")
    p.add_argument("--create", action="store_true", help="create the TPU VM first (adds the create step)")
    p.add_argument("--spot", action="store_true", help="create it as a spot (preemptible) VM")
    p.add_argument("--no_preset", action="store_true", help="do not pass --tpu=ACCELERATOR to main")
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    args, overrides = p.parse_known_args(argv)

    from experiments import registry
    from gpt2_jax.errors import UserError
    try:
        bad = [o for o in overrides if not o.startswith("--config.")]
        if bad:
            raise UserError(f"unknown argument {bad[0]!r}; overrides look like --config.KEY=VALUE.")
        if not args.workdir.startswith("gs://"):
            raise UserError(f"--workdir={args.workdir} must be a gs:// path: every host of the slice "
                            "reads and writes the same checkpoints.")
        steps = [s.strip() for s in args.steps.split(",") if s.strip()] or ["setup", "train"]
        unknown = [s for s in steps if s not in STEPS]
        if unknown:
            raise UserError(f"unknown step(s) {unknown}; choose from {','.join(STEPS)}.")
        if args.create and "create" not in steps:
            steps.insert(0, "create")
        args.steps = sorted(dict.fromkeys(steps), key=STEPS.index)
        presets = registry.presets(args.experiment)
        args.tpu_preset = "" if args.no_preset or args.accelerator not in presets else args.accelerator
        cmds = build_commands(args, overrides)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for what, cmd in cmds:
        print(f"# {what}", flush=True)
        print(shlex.join(cmd), flush=True)
        if not args.dry_run:
            subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
