"""Where `tcgen generate` writes samples: a JSONL file (a line per sample), or a Parquet
file of records (generator_core.arrow_schema(), a row group per ROW_GROUP_ROWS samples).

Both take whole samples as they arrive and can be continued after an interruption. A
Parquet file is unreadable until its footer is written, so a Parquet run also appends
every line to a JSONL journal beside it (`<file>.journal.jsonl`): resuming reads the
journal, as a JSONL run reads its file, and rebuilds the unfinished Parquet from it. The
Parquet is built in `<file>.partial` and renamed into place when the run completes; then
the journal is removed. Row groups start at multiples of ROW_GROUP_ROWS whatever the
interruptions, so a resumed file is the same bytes as an uninterrupted one.
"""
from __future__ import annotations

import io
import json
import os
from typing import Iterator

from generator_core import GenerationSpec, arrow_schema

ROW_GROUP_ROWS = 1024  # ~5-10 MB of records: what a Parquet writer holds in memory at most


def resume_point(path: str, spec: GenerationSpec, shown: str | None = None) -> int:
    """Position k (index start_index + k) to continue `path` from: after the index of its
    last whole line. A trailing partial line (an interrupted write) is dropped; a file
    written for another spec is refused rather than mixed (errors name `shown`, or `path`)."""
    shown = shown or path
    if not os.path.exists(path):
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            f.truncate(keep)
    lines = data[:keep].splitlines()
    if not lines:
        return 0
    try:
        last = json.loads(lines[-1])
        index, level, seed, dtype = last["index"], last["level"], last["seed"], last["dtype"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"output_file: {shown} does not end with a tcgen sample line ({exc})") from None
    if (level, seed, dtype) != (spec.difficulty, spec.seed, spec.dtype) or index < spec.start_index:
        raise ValueError(f"output_file: {shown} was written for level {level}, seed {seed}, dtype {dtype}, "
                         f"index {index}; this run asks for level {spec.difficulty}, seed {spec.seed}, "
                         f"dtype {spec.dtype} from index {spec.start_index}")
    return index + 1 - spec.start_index


def _nonempty(path: str) -> bool:
    return os.path.exists(path) and os.path.getsize(path) > 0


class JsonlOutput:
    """One line per sample, flushed as it is written: an interruption leaves whole lines
    (and at worst one partial line, which resuming drops)."""

    def __init__(self, path: str):
        self.path = path

    def existing(self) -> str | None:
        """What a fresh run would overwrite (it must be resumed instead), if anything."""
        return self.path if _nonempty(self.path) else None

    def resume(self, spec: GenerationSpec) -> int:
        return resume_point(self.path, spec)

    def __enter__(self) -> JsonlOutput:
        self._file = open(self.path, "a", encoding="utf-8")
        return self

    def write(self, line: str) -> None:
        self._file.write(line + "\n")  # whole lines only
        self._file.flush()

    def finish(self) -> None:
        """The run is complete (nothing more to do for a JSONL file)."""

    def __exit__(self, *exc: object) -> None:
        self._file.close()


class ParquetOutput:
    """Records in row groups as samples arrive, with the journal that makes it resumable."""

    def __init__(self, path: str):
        self.path, self.journal, self.partial = path, path + ".journal.jsonl", path + ".partial"
        self.schema = arrow_schema()
        self._writer = None

    def existing(self) -> str | None:
        return next((p for p in (self.path, self.journal) if _nonempty(p)), None)

    def resume(self, spec: GenerationSpec) -> int:
        if os.path.exists(self.journal) or not _nonempty(self.path):
            return resume_point(self.journal, spec)
        # A finished file, continued (a larger target_count): its rows become the journal.
        tmp = self.journal + ".tmp"
        try:
            self._journal_from_parquet(tmp)
            done = resume_point(tmp, spec, shown=self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        os.replace(tmp, self.journal)
        return done

    def _journal_from_parquet(self, journal_path: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            file = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise ValueError(f"output_file: {self.path} is not a Parquet file ({exc})") from None
        if not file.schema_arrow.equals(self.schema):
            raise ValueError(f"output_file: {self.path} is not a tcgen Parquet file (its columns differ from "
                             f"generator_core.arrow_schema())")
        with open(journal_path, "w", encoding="utf-8") as journal:
            for batch in file.iter_batches(batch_size=ROW_GROUP_ROWS):
                journal.writelines(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n"
                                   for row in batch.to_pylist())

    def __enter__(self) -> ParquetOutput:
        import pyarrow.parquet as pq

        self._rows: list[str] = []
        self._writer = pq.ParquetWriter(self.partial, self.schema)
        try:
            for line in self._journal_lines():  # what earlier runs wrote, in the same row groups
                self._add(line)
        except BaseException:
            self._discard()
            raise
        self._file = open(self.journal, "a", encoding="utf-8")
        return self

    def _journal_lines(self) -> Iterator[str]:
        if os.path.exists(self.journal):
            with open(self.journal, encoding="utf-8") as journal:
                yield from (line.rstrip("\n") for line in journal)

    def write(self, line: str) -> None:
        self._file.write(line + "\n")
        self._file.flush()
        self._add(line)

    def _add(self, line: str) -> None:
        self._rows.append(line)
        if len(self._rows) == ROW_GROUP_ROWS:
            self._write_group()

    def _write_group(self) -> None:
        import pyarrow as pa
        import pyarrow.json as paj

        data = "\n".join(self._rows).encode()
        try:
            table = paj.read_json(io.BytesIO(data), read_options=paj.ReadOptions(block_size=len(data) + 1),
                                  parse_options=paj.ParseOptions(explicit_schema=self.schema,
                                                                 unexpected_field_behavior="error"))
        except pa.ArrowInvalid as exc:
            raise ValueError(f"output_file: {self.journal} holds a line that is not a tcgen record ({exc})") from None
        self._writer.write_table(table.select(self.schema.names))
        self._rows = []

    def finish(self) -> None:
        """The run is complete: the last row group, the footer, the file in place, and the
        journal (now redundant) removed."""
        if self._rows:
            self._write_group()
        self._writer.close()
        self._writer = None
        os.replace(self.partial, self.path)
        self._file.close()
        os.remove(self.journal)

    def __exit__(self, *exc: object) -> None:
        """An unfinished run (interrupted, or failed): the journal keeps every sample and
        --resume rebuilds the Parquet from it."""
        self._file.close()
        self._discard()

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            os.remove(self.partial)


OUTPUTS = {"jsonl": JsonlOutput, "parquet": ParquetOutput}
