"""gpt2_jax against the HF PyTorch reference, side by side, in one command:

    python -m benchmarks.run [--quick] [--rounds N] [--only fwd_124m,train_small] [--markdown BENCHMARKS.md]

Every measurement runs in its own process (same thread count for both sides); the two sides
alternate within each round, the first side swapping every round; each process excludes its
compile / first call and reports the median of its repeats; the table shows the median over rounds.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from benchmarks.common import RESULT_TAG

# Environment both sides run under. glibc returns big freed buffers to the OS (and XLA's
# per-execution temp buffer is one big allocation), so every step would re-fault hundreds of MB
# of fresh pages; one arena + no mmap + no trim keeps them. Applied to torch too.
TUNED_MALLOC = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}

# name -> (jax worker args, reference worker args or None, target ratio or None, what)
CASES = {
    "fwd_124m": (["forward", "size='124m'", "batch=1", "seq=1024"], ["forward", "size='124m'", "batch=1", "seq=1024"],
                 1.0, "124M eval forward, 1x1024"),
    "attention": (["attention"], ["attention"], None, "causal attention kernel, 1x1024, 12 heads x 64"),
    "train_small": (["train", "size='small'", "batch=8", "seq=256"], ["train", "size='small'", "batch=8", "seq=256"],
                    1.3, "small (6L d384 ctx256) train step, 8x256"),
    "train_124m": (["train", "size='124m'", "batch=1", "seq=1024", "repeats=2"],
                   ["train", "size='124m'", "batch=1", "seq=1024", "repeats=2"], 1.5, "124M train step, 1x1024"),
    "train_124m_loss_chunk": (["train", "size='124m'", "batch=1", "seq=1024", "repeats=2", "loss_chunk=256",
                               "case='train_124m_loss_chunk'"], None, None,
                              "same, GPT2Config.loss_chunk=256 (fused head + loss)"),
    "gen_b1": (["generate", "batch=1", "repeats=2"], ["generate", "batch=1", "repeats=2"], 1.2,
               "124M greedy decode, 32+128, batch 1"),
    "gen_b8": (["generate", "batch=8", "repeats=2"], ["generate", "batch=8", "repeats=2"], 2.0,
               "124M greedy decode, 32+128, batch 8"),
    "gen_b1_bf16": (["generate", "batch=1", "repeats=2", "weights='bfloat16'"], None, None,
                    "same, bf16 weights (fp32 compute)"),
    "tokenizer": (["tokenizer"], ["tokenizer"], 0.5, "encode WikiText-2-raw test vs tiktoken"),
    "gemm_peak": (["gemm_peak"], None, None, "best fp32 GEMM n^3 (n=1024, 2048) through XLA"),
    "read_bw": (["bandwidth"], None, None, "read bandwidth, 1 GiB fp32 sum"),
    "data": (["data"], None, None, "input pipeline (tinyshakespeare, 1x1024)"),
}
OPT_IN = {"train_124m_loss_chunk"}  # run only when named in --only
THREADS = [os.cpu_count() or 1]  # set by main() from --threads


def run_worker(side: str, args: list[str], env: dict, timeout: float) -> list[dict]:
    cmd = [sys.executable, "-m", "benchmarks.worker", side, *args]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except subprocess.TimeoutExpired:
        print(f"  ! {side} {' '.join(args)}: timed out after {timeout:.0f}s", file=sys.stderr)
        return []
    recs = [json.loads(line[len(RESULT_TAG):]) for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode or not recs:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        print(f"  ! {side} {' '.join(args)} failed (exit {proc.returncode}):\n{tail}", file=sys.stderr)
    return recs


def collect(cases: list[str], rounds: int, env: dict, quick: bool, timeout: float) -> dict:
    """results[case][side] = list of records (one per round)."""
    results: dict = {}
    for r in range(rounds):
        for name in cases:
            jax_args, ref_args, _, _ = CASES[name]
            extra = ["repeats=1"] if quick and name.startswith("train_124m") else []
            sides = [("jax", jax_args)] + ([("torch", ref_args)] if ref_args else [])
            if r % 2:
                sides.reverse()
            for side, args in sides:
                t0 = time.perf_counter()
                for rec in run_worker(side, args + extra, env, timeout):
                    results.setdefault(rec["case"], {}).setdefault(side, []).append(rec)
                print(f"  round {r + 1}/{rounds} {name:12s} {side:5s} {time.perf_counter() - t0:6.1f}s",
                      file=sys.stderr, flush=True)
    return results


def _med(recs, key="value"):
    return statistics.median(r[key] for r in recs) if recs else float("nan")


def table(results: dict) -> str:
    """The ratio table plus derived rows (MFU, bandwidth floor, data vs train consumption)."""
    lines = ["| case | gpt2_jax | reference | unit | ratio | target | met | jax compile s | jax / ref peak RSS MB |",
             "|---|---:|---:|---|---:|---:|---|---:|---:|"]
    targets = {name: CASES[name][2] for name in CASES}
    order = ["fwd_124m", "attn_fwd", "attn_fwdbwd", "train_small", "train_124m", "train_124m_loss_chunk", "gen_b1", "gen_b8", "gen_b1_bf16", "tokenizer",
             "gemm_peak", "read_bw", "data_raw", "data_cached", "data_batch_at", "data_tf_batches"]
    for case in order:
        if case not in results:
            continue
        j, t = results[case].get("jax", []), results[case].get("torch", [])
        jv, tv = _med(j), _med(t)
        unit = (j or t)[0]["unit"]
        ratio = jv / tv if j and t else None
        target = targets.get(case)
        met = "" if ratio is None or target is None else ("yes" if ratio >= target else "**no**")
        rss = f"{_med(j, 'peak_rss_mb'):.0f}" + (f" / {_med(t, 'peak_rss_mb'):.0f}" if t else "")
        lines.append(f"| {case} | {jv:,.1f} | {'' if not t else f'{tv:,.1f}'} | {unit} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} | {'' if target is None else f'>= {target}x'} | "
                     f"{met} | {_med(j, 'compile_s'):.1f} | {rss} |")
    lines += [""] + derived(results)
    return "\n".join(lines)


def derived(results: dict) -> list[str]:
    out = ["| derived | value | target | met |", "|---|---:|---:|---|"]
    peak = _med(results.get("gemm_peak", {}).get("jax", []))
    for case in ("train_small", "train_124m", "train_124m_loss_chunk", "fwd_124m"):
        j = results.get(case, {}).get("jax", [])
        if j and peak == peak:
            tgt = 0.6 if case == "train_124m" else None
            flops = j[0]["flops_per_token"] / (peak * 1e9)
            mfu = _med(j) * flops
            # CPU-time basis: the step's CPU seconds spread over the threads, i.e. the wall time
            # it would take with both cores to itself (robust to other load on the machine).
            cpu = statistics.median(statistics.median(r["cpu_s"]) for r in j) / THREADS[0]
            mfu_cpu = j[0]["units"] / cpu * flops
            for label, m in (("wall time", mfu), ("CPU-time basis", mfu_cpu)):
                out.append(f"| MFU {case}, {label} (vs measured GEMM peak {peak:.0f} GFLOP/s) | {m:.0%} | "
                           f"{'' if tgt is None else f'>= {tgt:.0%}'} | "
                           f"{'' if tgt is None else ('yes' if m >= tgt else '**no**')} |")
    bw = _med(results.get("read_bw", {}).get("jax", []))
    for case in ("gen_b1", "gen_b1_bf16"):
        j = results.get(case, {}).get("jax", [])
        if j and bw == bw:
            floor = bw * 1e9 / (j[0]["weight_mb"] * 1e6)
            ratio = _med(j) / floor
            tgt = "" if case.endswith("bf16") else ">= 0.77 (within 1.3x)"
            met = "" if case.endswith("bf16") else ("yes" if ratio >= 1 / 1.3 else "**no**")
            out.append(f"| {case} vs its bandwidth floor ({bw:.1f} GB/s / {j[0]['weight_mb']:.0f} MB = "
                       f"{floor:.1f} tok/s) | {ratio:.2f}x of floor | {tgt} | {met} |")
    b16 = results.get("gen_b1_bf16", {}).get("jax", [])
    if b16:
        r = b16[0]
        fp32_floor = bw * 1e9 / (results["gen_b1"]["jax"][0]["weight_mb"] * 1e6) if "gen_b1" in results else float("nan")
        out.append(f"| gen_b1_bf16 vs the fp32 floor ({fp32_floor:.1f} tok/s) | {_med(b16) / fp32_floor:.2f}x | > 1 | "
                   f"{'yes' if _med(b16) > fp32_floor else '**no**'} |")
        out.append(f"| bf16 logit error vs fp32 (teacher-forced, 128 tokens) | max {r['logit_max_abs_err']:.3g}, "
                   f"mean {r['logit_mean_abs_err']:.3g} (logit std {r['logit_std']:.3g}); argmax agree "
                   f"{r['argmax_agree']:.1%} | | |")
    for case in ("data_raw", "data_cached", "data_tf_batches"):
        d = results.get(case, {}).get("jax", [])
        for train in ("train_124m", "train_small"):
            tr = results.get(train, {}).get("jax", [])
            if d and tr:
                out.append(f"| {case} / {train} consumption | {_med(d) / _med(tr):,.0f}x | > 1 | "
                           f"{'yes' if _med(d) > _med(tr) else '**no**'} |")
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import importlib.metadata as md
    vers = ", ".join(f"{p} {md.version(p)}" for p in ("jax", "jaxlib", "torch", "transformers", "tiktoken"))
    return f"{cpu}, {os.cpu_count()} cores; {vers}; Python {platform.python_version()}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one timed 124M train step per side")
    ap.add_argument("--rounds", type=int, default=None,
                    help="alternating rounds (default 1, ~5-6 min idle; 2 for steadier medians, ~10 min)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(CASES)} "
                    f"(default: all but {', '.join(sorted(OPT_IN))})")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both sides")
    ap.add_argument("--malloc", choices=("tuned", "default"), default="tuned",
                    help="glibc allocator settings for both sides (see TUNED_MALLOC)")
    ap.add_argument("--markdown", default="", help="also write the table into this file between markers")
    ap.add_argument("--json", default="", help="also dump every raw record to this file")
    ap.add_argument("--timeout", type=float, default=420.0, help="seconds per worker process")
    args = ap.parse_args(argv)
    rounds = args.rounds or 1
    THREADS[0] = args.threads
    cases = [c for c in (args.only.split(",") if args.only else [c for c in CASES if c not in OPT_IN]) if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    env = dict(os.environ, BENCH_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               TF_CPP_MIN_LOG_LEVEL="2")
    if args.malloc == "tuned":
        env.update(TUNED_MALLOC)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = collect(cases, rounds, env, args.quick, args.timeout)
    wall = time.perf_counter() - t0
    publish("benchmarks.run", argv, f"threads {args.threads}, malloc {args.malloc}, {rounds} round(s); load "
            f"average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end; took {wall:.0f} s.",
            table(results), results, args.markdown, args.json)




def publish(module: str, argv, details: str, table_text: str, records, markdown: str = "", json_path: str = "",
            **dump_kw) -> None:
    """Print the command line, date, machine and `details` over the table; also into `markdown`
    (between the module's markers) and the records into `json_path`, when given."""
    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"`python -m {module} {cmd}`".replace(" `", "`")
            + f" — {datetime.datetime.now():%Y-%m-%d %H:%M}, {machine()}; {details}\n\n{table_text}")
    print(text)
    if markdown:
        write_markdown(markdown, text, tag=module)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(records, f, **dump_kw)


def write_markdown(path: str, text: str, tag: str = "benchmarks.run") -> None:
    """Replace the block between the `tag` markers in `path` (append one if missing)."""
    BEGIN, END = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    block = f"{BEGIN}\n{text}\n{END}"
    try:
        with open(path) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = ""
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    else:
        doc = doc + ("\n" if doc else "") + block + "\n"
    with open(path, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
