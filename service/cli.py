"""`tcgen`: the command line. Subcommands build a GenerationSpec and call generator_core."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from pydantic import ValidationError

from generator_core import OPERATORS, GenerationError, GenerationSpec, generate
from service.engine.engine import BACKENDS


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """--name_with_underscores (the original's spelling) plus its --hyphenated alias."""
    names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*names, dest=name, **kwargs)


def _spec_flags(p: argparse.ArgumentParser) -> None:
    _flag(p, "level", type=int, help="0..4 -> 1, 2, 3, 5, 10 operators")
    _flag(p, "seed", type=int, default=0)
    _flag(p, "min_flops", type=int, default=2**34)
    _flag(p, "max_flops", type=int, default=2**35)
    _flag(p, "ops", nargs="+", help="allow-list of operator names")
    _flag(p, "exclude_ops", nargs="+", default=[], help="deny-list of operator names")
    _flag(p, "op_sequence", nargs="+", help="exact operators, one per node")
    _flag(p, "dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    _flag(p, "topology", default="dag", choices=["dag", "chain"])
    _flag(p, "max_tensor_numel", type=int, default=2**30)
    _flag(p, "max_total_bytes", type=int, help="default: what the validating device holds (at most 16 GiB)")
    _flag(p, "device", default="auto", choices=["cpu", "cuda", "auto"], help="where samples are validated")
    _flag(p, "no_validate", action="store_true", help="skip executing the samples")
    _flag(p, "baselines", action="store_true",
          help="time each sample on its validating device (eager median of 10 runs; machine-dependent)")
    _flag(p, "baseline_compile", action="store_true", help="with --baselines: also torch.compile and time it")


def _spec(args: argparse.Namespace, **extra: Any) -> GenerationSpec:
    if args.max_total_bytes is None:
        from service.engine import default_program_bytes

        args.max_total_bytes = default_program_bytes(args.device, getattr(args, "backend", "local"))
    fields = dict(level=args.level, seed=args.seed, min_flops=args.min_flops, max_flops=args.max_flops,
                  ops=args.ops, exclude_ops=args.exclude_ops, op_sequence=args.op_sequence, dtype=args.dtype,
                  topology=args.topology, max_tensor_numel=args.max_tensor_numel,
                  max_total_bytes=args.max_total_bytes, validate=not args.no_validate, baselines=args.baselines,
                  baseline_compile=args.baseline_compile, **extra)
    return GenerationSpec(**fields)


def _spec_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "spec"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(msg if msg.split(":")[0] in GenerationSpec.model_fields else f"{where}: {msg}")
    return "invalid spec: " + "; ".join(lines)


def cmd_ops(args: argparse.Namespace) -> int:
    entries = [op.catalogue_entry() for op in OPERATORS.values()]
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        for e in entries:
            print(f"{e['name']:16s} {e['category']:12s} arity {e['arity']}  FLOPs = {e['flops']}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    fmt = "kernelbench" if args.format == "kernelbench" else "fused_operator"
    sample = generate(_spec(args, format=fmt, start_index=args.index), args.index, device=args.device)
    print(sample.model_dump_json(indent=2) if args.format == "json" else sample.pytorch, end="\n" if args.format == "json" else "")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from service.engine import Engine
    from service.output import OUTPUTS
    from service.progress import ProgressReporter

    spec = _spec(args, count=args.target_count, start_index=args.start_idx, format=args.format)
    output = OUTPUTS[args.output_format](args.output_file)
    if not args.resume and (existing := output.existing()):
        print(f"error: output_file: {existing} exists; pass --resume to continue it", file=sys.stderr)
        return 2
    done = min(output.resume(spec), spec.count) if args.resume else 0
    failed, relaxed, written = 0, 0, 0
    start = time.perf_counter()
    engine = Engine(solver_workers=args.num_workers, device=args.device, cpu_validation=args.cpu_validation,
                    backend=args.backend)
    stopped = _stop_on_signals(engine)
    with engine, output:
        report = ProgressReporter(spec.count, done, engine.progress)
        try:
            indices = range(spec.start_index + done, spec.start_index + spec.count)
            for outcome in engine.run(spec, indices):
                if outcome.json is None:
                    failed += 1
                    print(f"warning: {outcome.error}", file=sys.stderr)
                else:
                    output.write(outcome.json)
                    written += 1
                    relaxed += outcome.relaxed
                report.update()
            if not stopped:
                output.finish()
        finally:
            report.close()
    seconds = time.perf_counter() - start
    p = engine.progress
    print(f"wrote {written} samples to {args.output_file} in {seconds:.1f} s ({written / max(seconds, 1e-9):.1f}/s); "
          f"relaxed window: {relaxed}; rejected attempts: {p.rejected}; failed: {failed}; worker restarts: "
          f"{p.restarts}; max_total_bytes {spec.max_total_bytes}; validated by "
          + (", ".join(f"{d} {n}" for d, n in sorted(p.validated.items())) or "none"), file=sys.stderr)
    if stopped:
        print(f"interrupted by {stopped[0]}: {done + written + failed} of {spec.count} done; "
              f"continue with --resume", file=sys.stderr)
        return 128 + int(getattr(signal, stopped[0]))
    return 3 if failed else 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The REST service on uvicorn. Settings come from TCGEN_* variables; flags override."""
    from service.app import create_app
    from service.server import serve
    from service.settings import Settings

    overrides = {k: v for k, v in dict(host=args.host, port=args.port, solver_workers=args.solver_workers,
                                       db_path=args.db, device=args.device, backend=args.backend).items()
                 if v is not None}
    settings = Settings(**overrides)
    serve(create_app(settings), settings)
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade a candidate against one sample: exit 0 correct, 1 incorrect, 2 bad input or
    no verdict (the reference failed here)."""
    from generator_core.grade import grade, select_sample

    sample = select_sample(args.samples, index=args.index, sample_id=args.id)
    try:
        with open(args.candidate, encoding="utf-8") as f:
            source = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"candidate: cannot read {args.candidate} ({exc})") from None
    result = grade(sample, source, device=args.device, compile=args.compile, timeout_s=args.timeout_s,
                   memory_limit_bytes=args.memory_limit_bytes, measure_speed=not args.no_speed, runs=args.runs)
    print(result.model_dump_json(indent=2) if args.json else result.summary())
    return 0 if result.correct else 1 if result.graded else 2


def cmd_export_verl(args: argparse.Namespace) -> int:
    from generator_core.verl import export_verl

    rows = export_verl(args.input, args.output, split=args.split)
    print(f"wrote {rows} rows to {args.output}", file=sys.stderr)
    return 0


def _stop_on_signals(engine) -> list[str]:
    """SIGINT / SIGTERM: stop handing out work and finish whole lines; a second Ctrl-C
    interrupts at once. Returns a list that receives the signal's name."""
    stopped: list[str] = []

    def handler(signum, frame):
        stopped.append(signal.Signals(signum).name)
        engine.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stopped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tcgen", description="Synthetic PyTorch programs for kernel-writing models")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ops", help="the operator catalogue")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_ops)

    p = sub.add_parser("sample", help="print one sample")
    _spec_flags(p)
    _flag(p, "index", type=int, default=0)
    _flag(p, "format", default="json", choices=["json", "py", "kernelbench"])
    p.set_defaults(run=cmd_sample)

    p = sub.add_parser("generate", help="write samples to a JSONL or Parquet file")
    _spec_flags(p)
    _flag(p, "output_file", required=True)
    _flag(p, "output_format", default="jsonl", choices=["jsonl", "parquet"],
          help="jsonl: a line per sample; parquet: records in row groups (generator_core.arrow_schema())")
    _flag(p, "target_count", type=int, default=10000)
    _flag(p, "start_idx", type=int, default=0)
    _flag(p, "num_workers", type=int,
          help="solver processes (default: CPU count; on Ray, the cluster's CPUs less one per validation actor)")
    _flag(p, "format", default="fused_operator", choices=["fused_operator", "kernelbench"])
    _flag(p, "resume", action="store_true", help="continue an interrupted file")
    _flag(p, "cpu_validation", default="inline", choices=["inline", "worker"],
          help="without a GPU: validate in each solver process (inline, faster) or in one "
               "dedicated validation process, as each GPU gets (worker)")
    _flag(p, "backend", default=os.environ.get("TCGEN_BACKEND", "local"), choices=list(BACKENDS),
          help="local processes, a Ray cluster (RAY_ADDRESS, else one started here), or auto "
               "(Ray if a cluster is reachable) (TCGEN_BACKEND)")
    p.set_defaults(run=cmd_generate)

    p = sub.add_parser("serve", help="the REST service (settings: TCGEN_* environment variables)")
    _flag(p, "host", help="bind address (default 127.0.0.1, TCGEN_HOST)")
    _flag(p, "port", type=int, help="default 8000 (TCGEN_PORT)")
    _flag(p, "solver_workers", type=int, help="solver processes (default: CPU count, TCGEN_SOLVER_WORKERS)")
    _flag(p, "db", help="SQLite job store (default tcgen.db, TCGEN_DB_PATH)")
    _flag(p, "device", choices=["cpu", "cuda", "auto"], help="where samples are validated (TCGEN_DEVICE)")
    _flag(p, "backend", choices=list(BACKENDS), help="local, ray or auto (default local, TCGEN_BACKEND; "
                                                     "Ray joins RAY_ADDRESS)")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("grade", help="grade a candidate implementation against a sample (a child process)")
    _flag(p, "samples", required=True, help="a tcgen JSONL or Parquet file")
    _flag(p, "index", type=int, help="the sample with this index (default: the file's only sample)")
    _flag(p, "id", help="the sample with this id")
    _flag(p, "candidate", required=True, help="Python source defining ModelNew (or fused_operator)")
    _flag(p, "device", default="auto", help="cpu, cuda, cuda:N or auto")
    _flag(p, "compile", action="store_true", help="also time torch.compile's reference")
    _flag(p, "timeout_s", type=float, default=300.0, help="wall-clock limit of the candidate's process")
    _flag(p, "memory_limit_bytes", type=int,
          help="CPU: the process's address space; CUDA: GPU memory (default 3x the sample's bytes + 4 GiB)")
    _flag(p, "runs", type=int, default=20, help="timed runs of each side (median)")
    _flag(p, "no_speed", action="store_true", help="skip timing")
    _flag(p, "json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=cmd_grade)

    p = sub.add_parser("export-verl", help="kernelbench-format samples as a verl RL dataset (Parquet)")
    _flag(p, "input", nargs="+", required=True, help="tcgen JSONL or Parquet files")
    _flag(p, "output", required=True, help="the Parquet file to write")
    _flag(p, "split", default="train", help="recorded in extra_info")
    p.set_defaults(run=cmd_export_verl)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValidationError as err:
        print(f"error: {_spec_error(err)}", file=sys.stderr)
        return 2
    except GenerationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except ValueError as err:  # e.g. --device cuda without a GPU
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
