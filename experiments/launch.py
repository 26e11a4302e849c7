"""Launch an experiment on a Cloud TPU VM slice: every host runs the same command and JAX finds its
peers from the TPU metadata (jax.distributed.initialize()); the workdir must be a gs:// bucket all
hosts share. `--dry_run` prints the gcloud commands instead of running them.

  python -m experiments.launch --tpu_name=gpt2 --zone=us-central2-b --accelerator=v4-32 \\
      --experiment=gpt2_124m --workdir=gs://BUCKET/gpt2_124m --create --dry_run [--config.KEY=VALUE ...]

Steps: (1) create the TPU VM (--create), (2) install this repo on all workers, (3) start training on
all workers in the background (logs in ~/train.log on each host). Rerunning step 3 resumes from the
newest checkpoint in the workdir, e.g. after a preemption."""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

DEFAULT_REPO = "https://github.com/OWNER/gpt2_jax.git"  # replace with your fork
RUNTIME = "tpu-ubuntu2204-base"


def _ssh(args, command: str) -> list[str]:
    cmd = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.tpu_name, f"--zone={args.zone}", "--worker=all"]
    if args.project:
        cmd.append(f"--project={args.project}")
    return cmd + [f"--command={command}"]


def build_commands(args, overrides: list[str]) -> list[list[str]]:
    """The gcloud invocations, in order, as argv lists."""
    from experiments import registry
    registry.get_config(args.experiment, args.tpu_preset, overrides)  # fail here, not on the pod
    cmds = []
    if args.create:
        create = ["gcloud", "compute", "tpus", "tpu-vm", "create", args.tpu_name, f"--zone={args.zone}",
                  f"--accelerator-type={args.accelerator}", f"--version={args.runtime_version}"]
        if args.project:
            create.append(f"--project={args.project}")
        if args.spot:
            create.append("--spot")
        cmds.append(create)
    setup = (f"(test -d gpt2_jax || git clone {shlex.quote(args.repo)} gpt2_jax) && cd gpt2_jax && "
             f"git fetch -q && git checkout -q {shlex.quote(args.branch)} && git pull -q && "
             "pip install -q -U 'jax[tpu]' && pip install -q -e .")
    cmds.append(_ssh(args, setup))
    train = ["python3", "-m", "experiments.main", f"--experiment={args.experiment}",
             f"--workdir={args.workdir}"]
    if args.tpu_preset:
        train.append(f"--tpu={args.tpu_preset}")
    train += overrides
    env = f"GPT2_JAX_DATA_DIR={shlex.quote(args.data_dir)} " if args.data_dir else ""
    run = f"cd gpt2_jax && {env}nohup {shlex.join(train)} > ~/train.log 2>&1 &"
    cmds.append(_ssh(args, run))
    return cmds


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
    p.add_argument("--create", action="store_true", help="create the TPU VM first")
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
        presets = registry.presets(args.experiment)
        args.tpu_preset = "" if args.no_preset or args.accelerator not in presets else args.accelerator
        cmds = build_commands(args, overrides)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for cmd in cmds:
        print(shlex.join(cmd), flush=True)
        if not args.dry_run:
            subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
