"""Training-step speed: this tree against a baseline revision, on the same batches, side by side in one run.

    python benchmarks/bench_train_step.py --baseline fb68d36 --batches 4 --rounds 2

Builds a small training set (personal profiles, NIAH haystacks, single facts; exact answers, so no teacher
passes), then times `batch_loss` + backward of the shipped checkpoint's hypernetwork on the same batches
(16 documents x 4 questions, 1-4 chunks, contrast rows: the GPU-stage recipe) with the code of this tree
and with the code of `--baseline` (checked out into a temporary git worktree). Each (tree, round) is its own
process; rounds alternate the trees so machine noise hits both. Prints per-batch seconds, the ratio of the
medians, and how far the losses agree (bf16: padding changes rounding; --dtype float32 for ~1e-6).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(args) -> None:
    """Runs inside a process whose sys.path starts with the tree under test."""
    import torch

    from d2l_memory.engine import D2L
    from d2l_memory.training.recipe import DataSpec, prepare
    from d2l_memory.training.trainer import TrainConfig, Trainer, batch_loss

    torch.set_num_threads(args.threads or torch.get_num_threads())
    d2l = D2L.from_pretrained(args.checkpoint, dtype=getattr(torch, args.dtype), device=args.device,
                              autocast=False if args.dtype == "float32" else None)  # fp32: no bf16 anywhere
    spec = DataSpec(personal=args.personal, niah=args.niah, realdoc=0, single_facts=args.personal, seed=args.seed,
                    phrasing="mixed")
    samples, targets = prepare(d2l, spec, Path(args.data))
    cfg = TrainConfig(out_dir=args.data + "/run", steps=args.batches, docs_per_step=args.docs, qas_per_doc=args.qas,
                      warmup=0, contrast_weight=0.3, max_chunks=4, seed=args.seed)
    tr = Trainer(d2l, samples, targets, cfg)
    state = {k: v.clone() for k, v in d2l.hypernet.state_dict().items()}
    out = []
    for step in range(args.batches):
        d2l.hypernet.load_state_dict(state)  # the same weights and latent mean for every batch and tree
        d2l.hypernet.zero_grad(set_to_none=True)
        batch = tr.batch_for(step)
        if d2l.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, info = batch_loss(d2l, d2l.hypernet, d2l.hypernet, batch, targets, cfg)
        loss.backward()
        if d2l.device.type == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        gn = torch.cat([p.grad.float().flatten() for p in d2l.hypernet.parameters() if p.grad is not None]).norm()
        out.append({"step": step, "sec": sec, "loss": info["loss"], "grad_norm": gn.item(),
                    "rows": sum(len(q) for _, q, _ in batch), "chunks": sum(k for *_, k in batch)})
    print("RESULT " + json.dumps(out), flush=True)


def run_tree(tree: Path, args) -> list[dict]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--checkpoint", args.checkpoint,
           "--dtype", args.dtype, "--device", args.device, "--data", args.data, "--batches", str(args.batches),
           "--docs", str(args.docs), "--qas", str(args.qas), "--personal", str(args.personal),
           "--niah", str(args.niah), "--seed", str(args.seed), "--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"worker in {tree} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", default="fb68d36", help="git revision to compare against")
    p.add_argument("--checkpoint", default="smollm2-135m")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16", help="base-model weights")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--rounds", type=int, default=1, help="processes per tree, alternating")
    p.add_argument("--docs", type=int, default=16)
    p.add_argument("--qas", type=int, default=4)
    p.add_argument("--personal", type=int, default=48)
    p.add_argument("--niah", type=int, default=16)
    p.add_argument("--seed", type=int, default=40)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--data", default=None, help="where the small training set is built (default: a temp dir)")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("batches", "rounds", "docs", "qas", "personal", "niah"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        args.data = args.data or str(Path(tmp) / "data")
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.baseline],
                       check=True, capture_output=True)
        try:
            runs = {"baseline": [], "this tree": []}
            for _ in range(args.rounds):
                runs["baseline"].append(run_tree(base, args))
                runs["this tree"].append(run_tree(ROOT, args))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    report(runs, args)


def report(runs: dict, args) -> None:
    print(f"\n{args.docs} documents x {args.qas} questions a step, contrast rows on, {args.dtype} base model, "
          f"{args.device}; baseline {args.baseline}; {args.rounds} round(s)\n")
    print("| batch | rows | chunks | baseline s | this tree s | ratio | loss baseline | loss this tree |")
    print("|---|---|---|---|---|---|---|---|")
    med = {k: [statistics.median(r[i]["sec"] for r in v) for i in range(args.batches)] for k, v in runs.items()}
    for i in range(args.batches):
        b, t = runs["baseline"][0][i], runs["this tree"][0][i]
        print(f"| {i} | {b['rows']} | {b['chunks']} | {med['baseline'][i]:.2f} | {med['this tree'][i]:.2f} | "
              f"{med['baseline'][i] / med['this tree'][i]:.2f}x | {b['loss']:.4f} | {t['loss']:.4f} |")
    total_b, total_t = sum(med["baseline"]), sum(med["this tree"])
    print(f"\nsummed step time: baseline {total_b:.1f} s, this tree {total_t:.1f} s: {total_b / total_t:.2f}x faster")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
