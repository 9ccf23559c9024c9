"""The operator's platforms, simulated over HTTP: the data warehouse (dwh), the charging system
(ocs) and provisioning (prov), for the embedded default, the tests and the bench.

:func:`serve_simulator` plays the three platforms over the HTTP contract of ``README.md`` beside
this file, with deterministic synthetic subscribers (``_synthetic``), fault knobs (``_faults``)
and an optional journal (``_journal``), on a lean HTTP/1.1 server of its own (``_server``).
It also plays the recharge platform: top-ups (``_topups``), notified to Gestor at least once
(``_notifier``, over a minimal client of its own, ``_outbound``). The routes (``_router``) are
a sans-IO table over the state (``_simulator``), configured by ``_config``. Nothing here imports
the rest of Gestor: Gestor's clients of the same contract are in ``gestor.platforms``.
"""

from ._config import SimulatorConfig
from ._faults import FaultSettings
from ._journal import JournalCorrupt
from ._serve import SimulatorHandle, run_simulator, serve_simulator
from ._simulator import Simulator, open_simulator
from ._synthetic import WELL_KNOWN_PREFIX, is_valid_msisdn, is_well_known

__all__ = [
    "WELL_KNOWN_PREFIX",
    "FaultSettings",
    "JournalCorrupt",
    "Simulator",
    "SimulatorConfig",
    "SimulatorHandle",
    "is_valid_msisdn",
    "is_well_known",
    "open_simulator",
    "run_simulator",
    "serve_simulator",
]
