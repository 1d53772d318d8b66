"""The JSON report: the stable contract scripts rely on (see DESIGN.md)."""

from __future__ import annotations

import json

from stackaudit.redact import scrub_data
from stackaudit.report import Report


def render(report: Report) -> str:
    return json.dumps(scrub_data(report.to_json()), indent=2, default=str) + "\n"
