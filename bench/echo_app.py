"""The stack's ceiling: a bare Quart-Trio echo endpoint served by hypercorn exactly as
`gestor serve` serves Gestor (same hypercorn settings; one worker in-process, N workers through
`hypercorn.run` with the trio worker class).

    python -m bench.echo_app --bind 127.0.0.1:8081 --workers 2

`POST /echo` answers 200 with the request body (as JSON); `GET /healthz` answers 200. It
prints `echo listening on http://HOST:PORT` when it starts serving, like `gestor serve`.

Keep `hypercorn_config` in step with `gestor.cli._main._hypercorn_config`: the baseline is only
meaningful if the two stacks are configured alike.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio
from hypercorn.config import Config
from quart import Response, request
from quart_trio import QuartTrio

app = QuartTrio("echo")
app.config["MAX_CONTENT_LENGTH"] = 16384


@app.post("/echo")
async def echo() -> Response:
    body = await request.get_data(cache=False, as_text=False)
    return Response(body, status=200, content_type="application/json")


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', status=200, content_type="application/json")


def hypercorn_config(bind: str, workers: int) -> Config:
    """The same settings as `gestor.cli._main._hypercorn_config` (graceful_timeout = the default
    `shutdown_grace`)."""
    config = Config()
    config.bind = [bind]
    config.graceful_timeout = 10.0
    config.accesslog = None
    config.errorlog = "-"
    config.worker_class = "trio"
    config.keep_alive_timeout = 75
    config.workers = workers
    return config


async def _serve_one(config: Config) -> None:
    from hypercorn.trio import serve

    stop = trio.Event()

    @app.before_serving
    async def _announce() -> None:
        print(f"echo listening on http://{config.bind[0]}", flush=True)

    async def watch_signals() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                stop.set()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_signals)
        await serve(app, config, shutdown_trigger=stop.wait)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_app", description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1:8081")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    config = hypercorn_config(args.bind, args.workers)
    if args.workers == 1:
        config.workers = 1
        trio.run(_serve_one, config)
    else:
        from hypercorn.run import run

        config.application_path = "bench.echo_app:app"
        print(f"echo listening on http://{args.bind} ({args.workers} workers)", flush=True)
        run(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
