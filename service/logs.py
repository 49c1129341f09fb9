"""The service's log: one JSON object per line on stderr (python-json-logger), for tcgen's
own events and uvicorn's lines alike, so a log shipper needs no parsing rules.

tcgen's events are logged on the `tcgen.*` loggers with an `event` field and their figures
as fields: engine.started, job.state, worker.restarted, index.given_up, service.started.
Without `tcgen serve` (the CLI, the Python API) nothing is configured and they go nowhere:
the CLI reports the same things in its summary."""
from __future__ import annotations

import logging
from typing import Any

logging.getLogger("tcgen").addHandler(logging.NullHandler())

_HANDLERS = {"handlers": ["stderr"], "level": "INFO", "propagate": False}
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "pythonjsonlogger.json.JsonFormatter",
                            "fmt": "%(levelname)s %(name)s %(message)s", "timestamp": "time",
                            "rename_fields": {"levelname": "level", "name": "logger"}}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "loggers": {"uvicorn": _HANDLERS, "uvicorn.error": {"level": "INFO"}, "uvicorn.access": _HANDLERS,
                "tcgen": _HANDLERS},
}


def log_event(logger: logging.Logger, severity: int, event: str, message: str, **fields: Any) -> None:
    """`message` for a person, `event` and `fields` for a machine."""
    logger.log(severity, message, extra={"event": event, **fields})
