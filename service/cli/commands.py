"""`tcgen`: the command line. Subcommands build a GenerationSpec and call generator_core.

Only the spec and the operator registry load with this module: a mistake in the flags is
reported before torch, ortools (and pandas) or the engine are imported; each command
imports what it runs."""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import signal
import sys
import time
from typing import Any

from pydantic import ValidationError

from generator_core.ops import OPERATORS
from generator_core.spec import MAX_FLOPS_LIMIT, MAX_OPS, GenerationSpec

BACKENDS = ("local", "ray", "auto")  # service.engine.BACKENDS, without loading the engine
# Spec fields the validating device decides when the flags leave them unset, and stand-ins
# that conflict with nothing, for checking the user's own fields before the device is known.
DEVICE_FIELDS = {"min_flops": 0, "max_flops": MAX_FLOPS_LIMIT,
                 "max_total_bytes": GenerationSpec.model_fields["max_total_bytes"].default}
# Spec fields whose flag has another name (by command); any other field is --<field>.
FLAGS = {None: {"validate": "--no_validate", "validate_samples": "--no_validate"},
         "sample": {"start_index": "--index"},
         "generate": {"start_index": "--start_idx", "count": "--target_count"}}
_PHRASES = {"(validate: true)": "(without --no_validate)", "needs baselines: true": "needs --baselines"}
_FIELD_WORD = re.compile(r"(?<![\w`-])(" + "|".join(sorted(set(GenerationSpec.model_fields) - {"validate_samples"},
                                                           key=len, reverse=True)) + r")(?![\w`])")
OP_LISTS = ("ops", "exclude_ops", "op_sequence")


class CliError(Exception):
    """A mistake in the command line or its files: `error: <message>`, exit 2."""


class OutputError(CliError):
    """The output file cannot be created, opened or written."""


class _HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default: argparse's value where the flag has one;
    a flag without one (None) says in its help what leaving it out does."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.required or action.default in (None, argparse.SUPPRESS):
            return text
        default = "off" if isinstance(action, argparse._StoreTrueAction) else "%(default)s"
        if isinstance(action.default, int) and action.default >= 2**10:
            default = _pow2(action.default)
        return f"{text} (default: {default})"


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """--name_with_underscores (the original's spelling) plus its --hyphenated alias."""
    names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*names, dest=name, **kwargs)


def _spec_flags(p: argparse.ArgumentParser) -> None:
    _flag(p, "level", type=int,
          help="0..4 -> 1, 2, 3, 5, 10 operators (default: none; required unless --num_ops or --op_sequence)")
    _flag(p, "num_ops", type=int, help=f"1..{MAX_OPS} operators, drawn as levels 2-4 draw theirs (default: none)")
    _flag(p, "seed", type=int, default=0, help="everything random derives from (seed, index)")
    window = "2**16..2**22 when validating on the CPU, 2**34..2**35 on a GPU"
    _flag(p, "min_flops", type=int, help=f"lower end of the program's FLOPs window (default: {window})")
    _flag(p, "max_flops", type=int, help=f"upper end of the program's FLOPs window (default: {window})")
    _flag(p, "ops", nargs="+", help="allow-list of operator names (default: every operator; see `tcgen ops`)")
    _flag(p, "exclude_ops", nargs="+", default=[], help="deny-list of operator names (default: none)")
    _flag(p, "op_sequence", nargs="+",
          help=f"exact operators, one per node, 1 to {MAX_OPS} (default: none, --level draws them)")
    _flag(p, "dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="the tensors' dtype")
    _flag(p, "topology", default="dag", choices=["dag", "chain"], help="program graph: a DAG or a chain")
    _flag(p, "max_tensor_numel", type=int, default=2**30, help="cap on every tensor's element count")
    _flag(p, "max_total_bytes", type=int, help="cap on all tensors of one program together (default: what the "
                                                "validating device holds, at most 16 GiB)")
    _flag(p, "device", default="auto", choices=["cpu", "cuda", "auto"],
          help="where samples are validated (auto: every visible GPU, else the CPU)")
    _flag(p, "no_validate", action="store_true", help="skip executing the samples")
    _flag(p, "baselines", action="store_true",
          help="time each sample on its validating device (eager median of 10 runs; machine-dependent)")
    _flag(p, "baseline_compile", action="store_true", help="with --baselines: also torch.compile and time it")


def _pow2(n: int) -> str:
    return f"2**{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else str(n)


def _spec(args: argparse.Namespace, **extra: Any) -> tuple[GenerationSpec, str | None]:
    """The command line's spec, and a note naming the FLOPs window when the device's
    default chose it (else None). The user's fields are checked first, with stand-ins for
    what the flags left to the device (a mistake shows before torch and the engine load);
    then the validating device's defaults fill them in."""
    fields = dict(level=args.level, seed=args.seed, min_flops=args.min_flops, max_flops=args.max_flops,
                  ops=args.ops, exclude_ops=args.exclude_ops, op_sequence=args.op_sequence, num_ops=args.num_ops,
                  dtype=args.dtype,
                  topology=args.topology, max_tensor_numel=args.max_tensor_numel,
                  max_total_bytes=args.max_total_bytes, validate=not args.no_validate, baselines=args.baselines,
                  baseline_compile=args.baseline_compile, **extra)
    unset = [k for k in DEVICE_FIELDS if fields[k] is None]
    spec = GenerationSpec(**{**fields, **{k: DEVICE_FIELDS[k] for k in unset}})
    if not unset:
        return spec, None
    from service.engine import CPU_FLOPS_WINDOW, device_defaults

    defaults = device_defaults(args.device, getattr(args, "backend", "local"))
    whose = "the CPU's" if (defaults["min_flops"], defaults["max_flops"]) == CPU_FLOPS_WINDOW else "a GPU's"
    lo, hi = fields["min_flops"], fields["max_flops"]
    if lo is None and hi is not None and hi < defaults["min_flops"]:
        raise CliError(f"invalid spec: --max_flops {hi} is below the default --min_flops {defaults['min_flops']} "
                       f"({whose} window); pass --min_flops too")
    if hi is None and lo is not None and lo > defaults["max_flops"]:
        raise CliError(f"invalid spec: --min_flops {lo} is above the default --max_flops {defaults['max_flops']} "
                       f"({whose} window); pass --max_flops too")
    fields.update({k: defaults[k] for k in unset})
    window = [f"--{k}" for k in ("min_flops", "max_flops") if k in unset]
    note = None
    if window:
        what = f"{whose} default" if len(window) == 2 else f"{window[0]}: {whose} default"
        note = f"FLOPs window {_pow2(fields['min_flops'])}..{_pow2(fields['max_flops'])} ({what}; " \
               f"{'/'.join(window)} to choose)"
    try:
        return GenerationSpec(**fields), note
    except ValidationError as err:
        raise CliError(_spec_error(err, args) + (f" ({note})" if note else "")) from None


def _flag_of(field: str, command: str | None) -> str:
    return FLAGS.get(command, {}).get(field) or FLAGS[None].get(field) or f"--{field}"


def _did_you_mean(names: list[str]) -> str:
    """'; did you mean ReLU?' for unknown operator names: a case-insensitive match, else
    the closest name."""
    lower = {name.lower(): name for name in OPERATORS}
    hints = []
    unknown = sorted({n for n in names if n not in OPERATORS})
    for name in unknown:
        key = name.lower() if name.lower() in lower else next(iter(difflib.get_close_matches(name.lower(), lower, n=1)), None)
        if key:
            hints.append(lower[key] if len(unknown) == 1 else f"{lower[key]} for {name}")
    return f"; did you mean {', '.join(hints)}?" if hints else ""


def _spec_error(err: ValidationError, args: argparse.Namespace | None = None) -> str:
    """The spec's errors in the command line's words: the flags the user typed (--index,
    --target_count), not the spec's field names, and a hint for a misspelt operator."""
    command = getattr(args, "command", None)
    lines = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        field, sep, body = msg.partition(": ")
        if not sep or field not in GenerationSpec.model_fields:
            field, body = (str(e["loc"][0]) if e["loc"] else "spec"), msg
        if field not in GenerationSpec.model_fields and field != "validate":
            lines.append(f"{field}: {body}")
            continue
        where = _flag_of(field, command)
        if e["type"] != "value_error":  # pydantic's own check of one value
            body = body[:1].lower() + body[1:]
            if isinstance(e.get("input"), (int, float, str)):
                where += f" {e['input']}"
        for phrase, said in _PHRASES.items():
            body = body.replace(phrase, said)
        body = _FIELD_WORD.sub(lambda m: _flag_of(m.group(1), command), body)
        if field in OP_LISTS and "unknown operator" in body:
            body += _did_you_mean(getattr(args, field, None) or [])
        lines.append(f"{where}: {body}")
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
    spec, note = _spec(args, format=fmt, start_index=args.index)
    from generator_core.generate import generate

    if note:  # stdout is the sample
        print(f"tcgen: {note}", file=sys.stderr)
    sample = generate(spec, args.index, device=args.device)
    print(sample.model_dump_json(indent=2) if args.format == "json" else sample.pytorch, end="\n" if args.format == "json" else "")
    return 0


class _Output:
    """`generate`'s output file (service.cli.output), whose OSErrors (a directory in the way, no
    permission, a full disk) become one `output_file:` error. Missing parent directories
    are created. What was written before a failed write stays: whole lines, and at most a
    partial last one, which --resume drops."""

    def __init__(self, fmt: str, path: str):
        from service.cli.output import OUTPUTS

        self.path = path
        self._call("create the directory of", os.makedirs, os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.inner = self._call("open", OUTPUTS[fmt], path)

    def _call(self, doing: str, fn, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            culprit = f" ({exc.filename})" if exc.filename and exc.filename != self.path else ""
            raise OutputError(f"output_file: cannot {doing} {self.path}{culprit}: {exc.strerror or exc}") from None

    def existing(self) -> str | None:
        return self._call("read", self.inner.existing)

    def resume(self, spec: GenerationSpec) -> int:
        return self._call("read", self.inner.resume, spec)

    def __enter__(self) -> _Output:
        self._call("open", self.inner.__enter__)
        return self

    def write(self, line: str) -> None:
        self._call("write to", self.inner.write, line)

    def finish(self) -> None:
        self._call("finish", self.inner.finish)

    def __exit__(self, *exc: object) -> None:
        try:
            self._call("close", self.inner.__exit__, *exc)
        except OutputError:
            if exc[0] is None:
                raise  # else the error already on its way is the one to report


def _progress_interval() -> float:
    """Seconds between plain progress lines: TCGEN_PROGRESS_INTERVAL, default 10."""
    text = os.environ.get("TCGEN_PROGRESS_INTERVAL", "10")
    try:
        return max(float(text), 0.0)
    except ValueError:
        raise CliError(f"TCGEN_PROGRESS_INTERVAL: expected seconds, got {text!r}") from None


def cmd_generate(args: argparse.Namespace) -> int:
    spec, note = _spec(args, count=args.target_count, start_index=args.start_idx, format=args.format)
    interval = _progress_interval()
    from service.engine import Engine
    from service.cli.progress import ProgressReporter

    output, done = _open_output(args, spec)
    if note:
        print(f"tcgen: {note}", file=sys.stderr)
    failed, relaxed, written = 0, 0, 0
    start = time.perf_counter()
    engine = Engine(solver_workers=args.num_workers, device=args.device, cpu_validation=args.cpu_validation,
                    backend=args.backend)
    stopped = _stop_on_signals(engine)
    try:
        with output, engine:  # the file opens first: a path that cannot be written starts no worker
            report = ProgressReporter(spec.count, done, engine.progress, interval=interval)
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
    except OutputError as err:
        kept = done + written
        raise OutputError(f"{err}; the {kept} samples before it are kept: continue with --resume" if kept
                          else str(err)) from None
    _print_summary(args, spec, engine.progress, time.perf_counter() - start, written=written, relaxed=relaxed,
                   failed=failed)
    if stopped:
        print(f"interrupted by {stopped[0]}: {done + written + failed} of {spec.count} done; "
              f"continue with --resume", file=sys.stderr)
        return 128 + int(getattr(signal, stopped[0]))
    return 3 if failed else 0


def _open_output(args: argparse.Namespace, spec) -> tuple[_Output, int]:
    """The output file, and how many of the spec's samples it already holds (with --resume)."""
    output = _Output(args.output_format, args.output_file)
    if not args.resume and (existing := output.existing()):
        raise CliError(f"output_file: {existing} exists; pass --resume to continue it")
    done = min(output.resume(spec), spec.count) if args.resume else 0
    return output, done


def _print_summary(args: argparse.Namespace, spec, p, seconds: float, *, written: int, relaxed: int,
                   failed: int) -> None:
    """generate's closing line on stderr; `p` is the engine's progress."""
    print(f"wrote {written} samples to {args.output_file} in {seconds:.1f} s ({written / max(seconds, 1e-9):.1f}/s); "
          f"FLOPs window {_pow2(spec.min_flops)}..{_pow2(spec.max_flops)}; relaxed window: {relaxed}; "
          f"rejected attempts: {p.rejected}; failed: {failed}; worker restarts: {p.restarts}; "
          f"max_total_bytes {spec.max_total_bytes}; validated by "
          + (", ".join(f"{d} {n}" for d, n in sorted(p.validated.items())) or "none"), file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    """The REST service on uvicorn. Settings come from TCGEN_* variables; flags override."""
    from service.app import create_app
    from service.server import serve
    from service.settings import Settings

    overrides = {k: v for k, v in dict(host=args.host, port=args.port, solver_workers=args.solver_workers,
                                       db_path=args.db, device=args.device, backend=args.backend).items()
                 if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as err:  # a TCGEN_* variable, named as the environment spells it
        problems = "; ".join(f"TCGEN_{'_'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
                             for e in err.errors())
        raise CliError(f"settings: {problems}") from None
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
    parser = argparse.ArgumentParser(prog="tcgen", description="Synthetic PyTorch programs for kernel-writing models",
                                     formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_ops(_command(sub, "ops", help="the operator catalogue"))
    _add_sample(_command(sub, "sample", help="print one sample"))
    _add_generate(_command(sub, "generate", help="write samples to a JSONL or Parquet file"))
    _add_serve(_command(sub, "serve", help="the REST service (settings: TCGEN_* environment variables)"))
    _add_grade(_command(sub, "grade", help="grade a candidate implementation against a sample (a child process)"))
    _add_export_verl(_command(sub, "export-verl", help="kernelbench-format samples as a verl RL dataset (Parquet)"))
    return parser


def _command(sub, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    return sub.add_parser(name, formatter_class=_HelpFormatter, **kwargs)


def _add_ops(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per operator, with its description")
    p.set_defaults(run=cmd_ops)


def _add_sample(p: argparse.ArgumentParser) -> None:
    _spec_flags(p)
    _flag(p, "index", type=int, default=0, help="the sample's index")
    _flag(p, "format", default="json", choices=["json", "py", "kernelbench"],
          help="json: the Sample record; py: the program; kernelbench: class Model with get_inputs")
    p.set_defaults(run=cmd_sample)


def _add_generate(p: argparse.ArgumentParser) -> None:
    _spec_flags(p)
    _flag(p, "output_file", required=True, help="where the samples go (missing directories are created)")
    _flag(p, "output_format", default="jsonl", choices=["jsonl", "parquet"],
          help="jsonl: a line per sample; parquet: records in row groups (generator_core.arrow_schema())")
    _flag(p, "target_count", type=int, default=10000, help="how many samples")
    _flag(p, "start_idx", type=int, default=0, help="the first index: sample k uses index start_idx + k")
    _flag(p, "num_workers", type=int,
          help="solver processes (default: CPU count; on Ray, the cluster's CPUs less one per validation actor)")
    _flag(p, "format", default="fused_operator", choices=["fused_operator", "kernelbench"],
          help="the programs' layout")
    _flag(p, "resume", action="store_true", help="continue an interrupted file")
    _flag(p, "cpu_validation", default="inline", choices=["inline", "worker"],
          help="without a GPU: validate in each solver process (inline, faster) or in one "
               "dedicated validation process, as each GPU gets (worker)")
    from service.settings import backend_from_env  # the one reader of TCGEN_BACKEND (light: pydantic-settings)

    _flag(p, "backend", default=backend_from_env(), choices=list(BACKENDS),
          help="local processes, a Ray cluster (RAY_ADDRESS, else one started here), or auto "
               "(Ray if a cluster is reachable) (TCGEN_BACKEND)")
    p.set_defaults(run=cmd_generate)


def _add_serve(p: argparse.ArgumentParser) -> None:
    _flag(p, "host", help="bind address (default 127.0.0.1, TCGEN_HOST)")
    _flag(p, "port", type=int, help="default 8000 (TCGEN_PORT)")
    _flag(p, "solver_workers", type=int, help="solver processes (default: CPU count, TCGEN_SOLVER_WORKERS)")
    _flag(p, "db", help="SQLite job store (default tcgen.db, TCGEN_DB_PATH)")
    _flag(p, "device", choices=["cpu", "cuda", "auto"], help="where samples are validated (default auto, TCGEN_DEVICE)")
    _flag(p, "backend", choices=list(BACKENDS), help="local, ray or auto (default local, TCGEN_BACKEND; "
                                                     "Ray joins RAY_ADDRESS)")
    p.set_defaults(run=cmd_serve)


def _add_grade(p: argparse.ArgumentParser) -> None:
    _flag(p, "samples", required=True, help="a tcgen JSONL or Parquet file")
    _flag(p, "index", type=int, help="the sample with this index (default: the file's only sample)")
    _flag(p, "id", help="the sample with this id (default: select by --index)")
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


def _add_export_verl(p: argparse.ArgumentParser) -> None:
    _flag(p, "input", nargs="+", required=True, help="tcgen JSONL or Parquet files")
    _flag(p, "output", required=True, help="the Parquet file to write")
    _flag(p, "split", default="train", help="recorded in extra_info")
    p.set_defaults(run=cmd_export_verl)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValidationError as err:
        print(f"error: {_spec_error(err, args)}", file=sys.stderr)
        return 2
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        generation = sys.modules.get("generator_core.generate")  # loaded once a command generated
        if generation is not None and isinstance(err, generation.GenerationError):
            print(f"error: {err}", file=sys.stderr)
            return 3
        if isinstance(err, ValueError):  # e.g. --device cuda without a GPU
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise

