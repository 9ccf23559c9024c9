"""Writing a result: the JSON (NaN and infinities as null) and the PNG beside it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import _report as report


def _json_default(o: Any) -> Any:
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, Path):
        return str(o)
    raise TypeError(repr(o))


def _clean(o: Any) -> Any:
    if isinstance(o, float):
        return None if math.isnan(o) or math.isinf(o) else o
    if isinstance(o, Mapping):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def write_outputs(result: dict[str, Any], path: Path, plot: bool) -> None:
    """Write `result` as JSON at `path` (and its PNG beside it if `plot`); records the paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    result["json_path"] = str(path)
    if plot and "timeseries" in result:
        png = report.plot(result, path.with_suffix(".png"))
        result["png_path"] = str(png) if png else None
    path.write_text(json.dumps(_clean(result), indent=1, default=_json_default) + "\n")


