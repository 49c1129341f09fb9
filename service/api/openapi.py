"""The checked-in schema: `python -m service.api.openapi` rewrites openapi.yaml from the app;
a test fails while the two differ."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from service.app import create_app
from service.settings import Settings

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"


def render_schema() -> str:
    schema = create_app(Settings(max_total_bytes=16 * 2**30)).openapi()
    return yaml.safe_dump(schema, sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render_schema(), encoding="utf-8")
    sys.stderr.write(f"wrote {SCHEMA_PATH}\n")
