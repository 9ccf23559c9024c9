"""Run the platform simulator standalone: ``python -m gestor.simulator [--bind HOST:PORT]``.

``--config FILE`` reads the ``[simulator]`` table of a TOML settings file.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from functools import partial

import trio

from ._config import SimulatorConfig
from ._serve import run_simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gestor.simulator", description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1:8081", help="HOST:PORT (port 0: any)")
    parser.add_argument("--config", help="TOML settings file with a [simulator] table")
    parser.add_argument("--state-dir", help="journal directory (overrides the config)")
    parser.add_argument("--seed", type=int, help="fault seed (overrides the config)")
    args = parser.parse_args(argv)
    table: dict[str, object] = {}
    if args.config:
        with open(args.config, "rb") as f:
            table = dict(tomllib.load(f).get("simulator", {}))
    if args.state_dir:
        table["state_dir"] = args.state_dir
    if args.seed is not None:
        table["seed"] = args.seed
    config = SimulatorConfig.from_mapping(table)
    host, _, port = args.bind.rpartition(":")
    try:
        trio.run(partial(run_simulator, config, host.strip("[]") or "127.0.0.1", int(port)))
    except* KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
