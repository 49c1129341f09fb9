"""The tcgen command line (`tcgen`, `python -m service.cli`): commands.py parses and runs
the commands, progress.py draws generate's progress, output.py writes its JSONL and Parquet
files (resume, the Parquet journal)."""
from service.cli.commands import BACKENDS, CliError, build_parser, main

__all__ = ["BACKENDS", "CliError", "build_parser", "main"]
