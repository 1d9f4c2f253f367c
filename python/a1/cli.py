"""The `a1` command: calibrate, eval, generate, bench, report (`a1 COMMAND --help` for each).

    a1 eval --dataset gsm8k --limit 8 --samples 4 --out runs/demo
    a1 report runs/demo
    a1 generate "What is 7*8?" --samples 2

Defaults run the built-in smollm2-135m in self mode (one model drafts and scores). Bad flag values
exit 2 with argparse's message naming the flag; a run that fails exits 1 with the error's message.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from a1.cli_flags import (add_calibration_flag, add_data_flags, add_model_flags, add_policy_flags, policy_values,
                          remote_values)
from a1.policy.config import FIELDS as POLICY_FIELDS

COMMANDS = ("calibrate", "eval", "generate", "bench", "report", "serve", "distill-draft")
USER_ERRORS = (ValueError, OSError, ImportError)  # shown as one line, no traceback


# ---------------------------------------------------------------------------- the parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="a1", description="A1/ATTS: a draft model writes reasoning steps, the target scores each one, and a "
                               "conformal p-value decides per sample: accept, resample or target takeover.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser(
        "eval", help="evaluate a method on a math dataset; results survive interruption (rerun to resume)",
        description="Evaluate on a math dataset. Writes DIR/run.json, samples.jsonl (one line per finished sample) "
                    "and summary.json; rerunning with the same --out resumes, other settings are refused.")
    add_policy_flags(p)
    add_calibration_flag(p)
    add_data_flags(p, "test")
    add_model_flags(p)
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<dataset>-<method>-N<samples>-a<alpha>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "calibrate", help="draft steps on the calibration split and write a calibration file",
        description="Draft samples on the dataset's calibration split (disjoint from its test split) with the "
                    "eval's exact sampling and step settings, and save every step's score for "
                    "`a1 eval --calibration FILE`.")
    add_data_flags(p, "calibration")
    add_policy_flags(p, defaults={"num_samples": 4}, with_method=False)
    add_model_flags(p)
    p.add_argument("--out", metavar="FILE", help="calibration file to write (default: calibration-<dataset>.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("generate", help="answer one prompt, streaming every step with its score, p-value and decision")
    p.add_argument("prompt", help="the question (sent as one user message of the chat template)")
    add_policy_flags(p, defaults={"num_samples": 4})
    add_calibration_flag(p)
    add_model_flags(p)

    p = sub.add_parser(
        "bench", help="kernel, engine and policy benchmarks (from a source checkout)", formatter_class=fmt,
        description="Runs the benchmarks under benchmarks/: kernel microbenchmarks (pytest-benchmark), "
                    "benchmarks/bench_engine.py and benchmarks/bench_policy.py when present.")
    kinds = ["kernels", "engine", "policy"]
    p.add_argument("--only", nargs="+", choices=kinds, default=kinds, help="which benchmarks to run")
    p.add_argument("--dir", metavar="DIR", help="the benchmarks folder (default: benchmarks/ of the source checkout)")
    p.add_argument("--out", metavar="DIR", help="where results go (default: the benchmarks folder)")

    from a1.serve import build_parser as build_serve_parser

    p = sub.add_parser("serve", help="serve a model (or a draft/target pair) over the OpenAI and SGLang HTTP APIs",
                       description="Our engine behind /v1/completions (vLLM's dialect), SGLang's /generate, "
                                   "/v1/models, /health and /metrics.")
    build_serve_parser(p)

    from a1.distill.cli import add_parser as add_distill_parser

    add_distill_parser(sub)  # a1 distill-draft

    p = sub.add_parser("report", help="report.md and plots over run directories of `a1 eval`", formatter_class=fmt)
    p.add_argument("runs", nargs="+", metavar="DIR", help="run directories of `a1 eval --out`")
    p.add_argument("--out", metavar="DIR",
                   help="where report.md and the PNGs go (default: DIR with one run, else ./report)")
    p.add_argument("--roofline-seconds", type=float, default=1.0, help="time spent measuring this machine's peaks")
    return parser


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser, **extra):
    """EvalSettings of the parsed flags (the method's preset, then the policy flags given); a value
    the settings refuse is a usage error (exit 2)."""
    from a1.eval.settings import EvalSettings

    values = dict(policy_values(args), target=args.target, draft=args.draft, target_url=args.target_url,
                  draft_url=args.draft_url, tokenizer=args.tokenizer, max_model_len=args.max_model_len,
                  dtype=args.dtype, remote=remote_values(args))
    for name in ("calibration", "warmup_prior", "dataset", "data", "limit"):
        if hasattr(args, name):
            values[name] = getattr(args, name)
    if hasattr(args, "no_progress"):
        values["progress"] = not args.no_progress
    try:
        return EvalSettings.build(method=getattr(args, "method", "a1"), **values, **extra)
    except (OSError, ValueError, TypeError) as e:
        text = str(e)
        for field, flag in (("data", "--data"), ("calibration", "--calibration"), ("warmup_prior", "--warmup-prior"),
                            ("dtype", "--dtype")):
            if text.startswith(field + ": "):  # "data: ..." -> "argument --data: ..."
                parser.error(f"argument {flag}: {text[len(field) + 2:]}")
        if text.startswith("calibration must be"):
            parser.error(f"argument --calibration: {text}")
        field = text.split(" ", 1)[0].rstrip(":")
        if field in POLICY_FIELDS or field in ("max_model_len", "generate_timeout", "score_timeout",
                                               "connect_timeout", "max_retries"):  # a check across policy fields ("min_tokens (20) must be <= ..."): name its flag
            parser.error(f"argument --{field.replace('_', '-')}: {text}")
        parser.error(text)


def check_flag(parser: argparse.ArgumentParser, flag: str, check: Callable, *args) -> None:
    """Run a start-up check of a flag's value (a1.eval.startup); its refusal is a usage error."""
    try:
        check(*args, name=f"argument {flag}")
    except ValueError as e:
        parser.error(str(e))


# ---------------------------------------------------------------------------- the commands
def cmd_eval(args, parser, llm) -> int:
    from a1.eval.runner import run_eval
    from a1.eval.startup import check_out_dir

    settings = settings_from(args, parser, out=args.out)
    check_flag(parser, "--out", check_out_dir, settings.out_dir())
    run_eval(settings, llm=llm)
    return 0


def cmd_calibrate(args, parser, llm) -> int:
    from a1.eval.calibrate import run_calibration
    from a1.eval.startup import check_out_file

    settings = settings_from(args, parser)
    out = args.out or f"calibration-{settings.dataset_name}.json"
    check_flag(parser, "--out", check_out_file, Path(out))  # in a second, not after the drafting
    run_calibration(settings, out, llm=llm)
    return 0


def cmd_generate(args, parser, llm) -> int:
    """Streams each step as it joins its sample (rejected drafts before the step that replaced
    them), then prints every sample's answer and the vote."""
    from a1.policy import generate

    settings = settings_from(args, parser)
    printed: dict[int, int] = {}  # sample index -> step records printed

    def on_step(sample, step) -> None:
        records = sample.result.steps
        for record in records[printed.get(sample.index, 0):]:
            text = sample.ctx.tokenizer.decode(step.token_ids, skip_special_tokens=True) if record is step.record \
                else f"(rolled back: {record.num_tokens} tokens)"
            score = "" if record.score is None else f"score {record.score:.4g}"
            p = "" if record.p_value is None else f"p {record.p_value:.3f}"
            head = f"[sample {sample.index} turn {record.turn:2d}] {record.by:6s} {record.decision:8s} {score:13s} {p:7s}"
            print(head + " | " + text.replace("\n", "\\n"), flush=True)
        printed[sample.index] = len(records)

    from a1.eval.settings import build_llm
    from a1.policy.generate import prepare

    llm = llm or build_llm(settings)
    prepare(args.prompt, target=llm, config=settings.policy, calibration=settings.calibration, chat=True,
            describe=lambda i: "the prompt", warmup_prior=settings.warmup_prior)  # every refusal before anything streams
    result = generate(args.prompt, target=llm, config=settings.policy, calibration=settings.calibration, chat=True,
                      progress=False, on_step=on_step, warmup_prior=settings.warmup_prior)[0]
    for sample in result.samples:
        print(f"sample {sample.index}: answer {sample.answer!r} ({sample.finish_reason}, {len(sample.token_ids)} "
              f"tokens: {sample.draft_tokens} draft, {sample.target_tokens} target)")
    rate = result.stats.get("takeover_rate")
    print(f"takeover rate: {'-' if rate is None else f'{rate:.3f}'} of {result.stats.get('tested', 0)} tested steps "
          f"(alpha {settings.policy.alpha:g})")
    print(f"voted answer: {result.answer}")
    return 0


KERNEL_BENCHES = ("bench_score.py", "bench_sampling.py", "bench_linear.py", "bench_paged_attention.py",
                  "bench_quantile_buffer.py")


def find_benchmarks(given: Optional[str]) -> Optional[Path]:
    """The benchmarks folder: --dir, else the source checkout's (absent from an installed wheel)."""
    if given is not None:
        return Path(given) if Path(given).is_dir() else None
    here = Path(__file__).resolve().parents[2] / "benchmarks"  # python/a1/cli.py -> the checkout root
    return here if here.is_dir() else None


def cmd_bench(args, parser, llm) -> int:
    import subprocess

    folder = find_benchmarks(args.dir)
    if folder is None:
        where = args.dir or "the source checkout"
        raise FileNotFoundError(f"no benchmarks folder in {where}: the benchmarks ship with the source repository, "
                                "not with an installed a1; clone it and run `a1 bench` (or `make bench`) there")
    out = Path(args.out) if args.out else folder
    out.mkdir(parents=True, exist_ok=True)
    runs: list[tuple[str, list[str]]] = []
    if "kernels" in args.only:
        files = [str(folder / f) for f in KERNEL_BENCHES if (folder / f).exists()]
        if files:
            json_path = str(out / "latest.json")
            runs.append(("kernels", [sys.executable, "-m", "pytest", *files, "--benchmark-enable",
                                     "--benchmark-columns=median,iqr,rounds", f"--benchmark-json={json_path}"]))
            if (folder / "report.py").exists():
                runs.append(("kernel report", [sys.executable, str(folder / "report.py"), json_path]))
    if "engine" in args.only and (folder / "bench_engine.py").exists():
        runs.append(("engine", [sys.executable, str(folder / "bench_engine.py"), "--out",
                                str(out / "engine_results.md")]))
    if "policy" in args.only and (folder / "bench_policy.py").exists():
        runs.append(("policy", [sys.executable, str(folder / "bench_policy.py"), "--out",
                                str(out / "policy_results.md")]))
    if not runs:
        raise FileNotFoundError(f"{folder} has none of the benchmarks asked for ({', '.join(args.only)})")
    failed = []
    for name, command in runs:
        print(f"== a1 bench: {name}: {' '.join(command)}", flush=True)
        if subprocess.run(command, cwd=folder.parent).returncode != 0:
            failed.append(name)
    if failed:
        print(f"a1 bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args, parser, llm) -> int:
    from a1.eval.report import write_report
    from a1.eval.startup import check_out_dir

    if not args.roofline_seconds > 0:
        parser.error(f"argument --roofline-seconds: must be > 0, got {args.roofline_seconds}")
    if args.out is not None:
        check_flag(parser, "--out", check_out_dir, Path(args.out))
    out = args.out or (args.runs[0] if len(args.runs) == 1 else "report")
    path = write_report(args.runs, out, roofline_seconds=args.roofline_seconds)
    print(f"wrote {path}")
    return 0


def cmd_distill_draft(args, parser, llm) -> int:
    from a1.distill.cli import cmd_distill_draft as run

    return run(args, parser, llm)


def cmd_serve(args, parser, llm) -> int:
    from a1.serve.cli import config_from_args, run

    try:
        config = config_from_args(args)
    except ValueError as e:
        parser.error(str(e))
    return run(config)


# ---------------------------------------------------------------------------- main
def main(argv: Optional[Sequence[str]] = None, *, llm=None) -> int:
    """Run `a1 argv...`; returns the exit status. llm: an already built a1.LLM to use instead of
    loading --target/--draft (tests)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its one-off note on disabled timeouts
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[args.command]  # errors name this command's flags
    run = {"eval": cmd_eval, "calibrate": cmd_calibrate, "generate": cmd_generate, "bench": cmd_bench,
           "report": cmd_report, "serve": cmd_serve, "distill-draft": cmd_distill_draft}[args.command]
    try:
        return run(args, sub, llm)
    except KeyboardInterrupt:
        hint = "; rerun the same command to resume" if args.command == "eval" else ""
        print(f"a1 {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        print(f"a1 {args.command}: error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        from a1.eval.runner import RunStopped
        from a1.remote.errors import RemoteError

        if not isinstance(e, (RunStopped, RemoteError)):  # a bug: keep its traceback
            raise
        print(f"a1 {args.command}: error: {e}", file=sys.stderr)  # a server that failed: its message says it all
        return 1


if __name__ == "__main__":
    sys.exit(main())
