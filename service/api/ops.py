"""GET /v1/ops: the operator catalogue (what `tcgen ops --json` prints)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from generator_core import OPERATORS

router = APIRouter(prefix="/v1/ops", tags=["ops"])


@router.get("", summary="The operator catalogue")
def list_ops() -> list[dict[str, Any]]:
    return [op.catalogue_entry() for op in OPERATORS.values()]
