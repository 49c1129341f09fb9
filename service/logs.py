"""The service's log: one JSON object per line on stderr (python-json-logger), for tcgen's
own events and uvicorn's lines alike, so a log shipper needs no parsing rules.

tcgen's events are logged on the `tcgen.*` loggers with an `event` field and their figures
as fields: engine.started, job.state, worker.restarted, index.given_up, service.started.
Without `tcgen serve` (the CLI, the Python API) nothing is configured and they go nowhere:
the CLI reports the same things in its summary."""
from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

logging.getLogger("tcgen").addHandler(logging.NullHandler())


class AccessFields(logging.Filter):
    """uvicorn's access line as fields too: it logs '%s - "%s %s HTTP/%s" %d' with (client,
    method, path, http version, status) as the record's args."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            record.client, record.method, record.path, _, record.status = record.args
        return True


_HANDLERS = {"handlers": ["stderr"], "level": "INFO", "propagate": False}
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "pythonjsonlogger.json.JsonFormatter",
                            "fmt": "%(levelname)s %(name)s %(message)s", "timestamp": "time",
                            "rename_fields": {"levelname": "level", "name": "logger"},
                            # uvicorn's copy of each message with terminal colour codes
                            "reserved_attrs": [*RESERVED_ATTRS, "color_message"]}},
    "filters": {"access_fields": {"()": AccessFields}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
                 "access": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr",
                            "filters": ["access_fields"]}},
    "loggers": {"uvicorn": _HANDLERS, "uvicorn.error": {"level": "INFO"},
                "uvicorn.access": {**_HANDLERS, "handlers": ["access"]}, "tcgen": _HANDLERS},
}


def log_event(logger: logging.Logger, severity: int, event: str, message: str, **fields: Any) -> None:
    """`message` for a person, `event` and `fields` for a machine."""
    logger.log(severity, message, extra={"event": event, **fields})
