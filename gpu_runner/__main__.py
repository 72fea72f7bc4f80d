"""`python -m gpu_runner --pool POOL`: one runner process (a local process or an ECS task)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from cogplane.logs import setup_json_logging
from cogplane.processes import settle_heap
from cogplane.wiring import build
from gpu_runner.runner import RunnerConfig, RunnerProcess
from gpu_runner.settings import RunnerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_runner")
    parser.add_argument("--pool", required=True, help="the pool to serve (v-<version id> or d-<owner>.<name>)")
    parser.add_argument("--idle-timeout", type=float, default=None, help="default COGPLANE_IDLE_TIMEOUT (300)")
    parser.add_argument("--keep-warm", action="store_true", help="never exit on idle (min_instances)")
    parser.add_argument("--runner-id", default=None)
    parser.add_argument("--spawned-at", type=float, default=None, help="unix time the dispatcher started us")
    parser.add_argument(
        "--stop-grace",
        type=float,
        default=None,
        help="on SIGTERM/SIGINT: seconds in-flight predictions may run on (default 20)",
    )
    args = parser.parse_args(argv)
    settings = RunnerSettings()
    config = RunnerConfig(
        pool=args.pool,
        work_root=settings.home / "runner",
        env_cache=settings.env_cache or settings.home / "envs",
        idle_timeout=settings.idle_timeout if args.idle_timeout is None else args.idle_timeout,
        keep_warm=args.keep_warm,
        spawned_at=args.spawned_at,
        cog_url=settings.cog_url,
        http_port=settings.runner_http_port,
        ecs_metadata_uri=settings.ecs_metadata_uri,
        cog_sync=settings.cog_sync,
    )
    if args.stop_grace is not None:
        config.stop_grace = args.stop_grace
    if args.runner_id:
        config.runner_id = args.runner_id
    if settings.log_format == "json":  # deployed tasks (CloudWatch): queryable fields, prediction_id
        setup_json_logging("runner", runner_id=config.runner_id, pool=config.pool)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s runner %(levelname)s %(message)s")
    services = build(settings)
    runner = RunnerProcess(services, config)
    # SIGTERM: ECS scale-in or a retired warm runner; SIGINT: the local platform stops
    signal.signal(signal.SIGTERM, runner.request_stop)
    signal.signal(signal.SIGINT, runner.request_stop)
    settle_heap()  # loaded and built: later full collections walk only what predictions make
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
