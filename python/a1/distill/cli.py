"""`a1 distill-draft`: the subcommand's flags and its command (a1.cli adds both)."""
from __future__ import annotations

import argparse

from .run import DistillConfig

DEFAULTS = DistillConfig()


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "distill-draft", help="make a cheap draft from a target by knowledge distillation (resumable)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Distill a shallow draft (a few decoder layers on the target's own embedding and LM head) "
                    "from the target's continuations of the bundled datasets' calibration prompts, in a fixed time "
                    "budget; writes DIR for `a1 eval --draft DIR` / a1.LLM(target, draft=DIR). Rerun the same "
                    "command to resume an interrupted run.")
    p.add_argument("--target", default=DEFAULTS.target, help="the model to distill (built-in name, HF directory, GGUF)")
    p.add_argument("--layers", type=int, default=DEFAULTS.num_layers, help="decoder layers of the draft")
    p.add_argument("--init", default=DEFAULTS.init,
                   help="target layers the draft's layers start from: first, spread, new (random) or indices 0,1,2,29")
    p.add_argument("--out", required=True, metavar="DIR", help="the draft directory to write")
    p.add_argument("--minutes", type=float, default=DEFAULTS.minutes,
                   help="time budget of the whole run: data, training, measurement")
    p.add_argument("--datasets", default=",".join(DEFAULTS.datasets),
                   help="bundled datasets whose calibration splits give the prompts (comma-separated)")
    p.add_argument("--prompts-per-dataset", type=int, default=None, help="at most this many prompts of each")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULTS.max_new_tokens,
                   help="tokens of each target continuation")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr, help="peak learning rate (AdamW)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seeds the data and the batch order")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--keep-work", action="store_true", help="keep DIR/.work (data shards, checkpoint) afterwards")
    p.add_argument("--measure", action="store_true",
                   help="only measure the draft already in --out on this machine (agreement, acceptance, cost)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def cmd_distill_draft(args, parser, llm=None) -> int:
    from pathlib import Path

    from a1.models.draft_spec import MARKER

    try:
        config = DistillConfig(
            target=args.target, num_layers=args.layers, init=args.init, minutes=args.minutes,
            datasets=tuple(d.strip().lower() for d in args.datasets.split(",") if d.strip()),
            prompts_per_dataset=args.prompts_per_dataset, max_new_tokens=args.max_new_tokens, lr=args.lr,
            seed=args.seed, threads=args.threads, keep_work=args.keep_work)
        config.init_layers(10**6)  # the form of --init now; its range once the target is loaded
    except ValueError as e:
        text = str(e)
        flag = {"num_layers": "--layers", "minutes": "--minutes", "datasets": "--datasets", "init": "--init",
                "max_new_tokens": "--max-new-tokens"}.get(text.split(" ", 1)[0].rstrip(":"))
        parser.error(f"argument {flag}: {text}" if flag else text)
    out = Path(args.out)
    if args.measure:
        return measure_only(out, config)
    if (out / MARKER).is_file() and not (out / ".work").exists():
        print(f"{out} already holds a distilled draft ({MARKER}); remove it or choose another --out "
              "(--measure measures it again)")
        return 0
    from .run import run_distillation

    result = run_distillation(config, out, progress=not args.no_progress)
    m = result.measured
    print(f"draft: {result.out} ({config.num_layers} layers of {config.target}, init {config.init})")
    print(f"data: {result.sequences} target continuations, {result.tokens} tokens, {result.data_seconds:.0f} s")
    print(f"training: {result.steps} steps, {result.epochs:.2f} epochs, {result.train_seconds:.0f} s, "
          f"loss {result.final_loss:.3f}, top-1 on training batches {result.train_agreement:.3f}")
    print(quality_line(m))
    print(f"total {result.wall_seconds / 60:.1f} min; use it: a1 eval --draft {result.out}")
    return 0


def measure_only(out, config: DistillConfig) -> int:
    """--measure: the held-out figures of an existing draft directory, nothing trained or written."""
    import time

    import torch

    from a1.models.draft_dir import load_distilled_draft
    from a1.models.draft_spec import MARKER
    from a1.models.loader import load_model

    from .run import measure

    if not (out / MARKER).is_file():
        raise FileNotFoundError(f"{out} holds no distilled draft ({MARKER}): nothing to measure")
    if config.threads:
        torch.set_num_threads(config.threads)
    target = load_model(config.target)
    draft = load_distilled_draft(out, target, name="--out")
    start = time.perf_counter()
    print(quality_line(measure(target, draft, config)) + f" ({time.perf_counter() - start:.0f} s)")
    return 0


def quality_line(m: dict) -> str:
    """The held-out measurement (a1.distill.measure.DraftQuality.as_dict()) in one line."""
    return (f"held-out: top-1 agreement {m['agreement']:.3f} over {m['positions']} positions; speculative decoding "
            f"at k={m['speculative_k']}: {m['acceptance']:.3f} of proposals accepted, first proposal accepted in "
            f"{m['first_token_acceptance']:.3f} of verifies, {m['tokens_per_verify']:.2f} tokens per verify; cost "
            f"{m['cost_ratio']:.3f}x the target per decode step at batch {m['cost_batch']} "
            f"({m['draft_step_ms']:.1f} vs {m['target_step_ms']:.1f} ms)")
