"""Test set-up for the actor runtime.

``import actors`` must find the package in this checkout even where an older
editable install maps ``actors`` to a namespace package (it predates
``actors/__init__.py``; ``pip install -e .`` fixes that for good).
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
