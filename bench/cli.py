"""`python -m bench [--quick] [--json PATH]`: run every measurement in one go, print a table."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report, scenarios
from bench.harness import EXAMPLES, REPO, DirectCog, Stack, default_env_cache, latest_schema
from cogplane.settings import default_api_workers

FULL = {
    "warm_n": 200,
    "warmup": 20,
    "cold_runs": {"hello": 3, "embeddings": 2},
    "idle_samples": 4,
    "idle_gap_s": 2.5,
    "throughput_n": 200,
    "clients": 4,
}
QUICK = {
    "warm_n": 50,
    "warmup": 5,
    "cold_runs": {"hello": 1, "embeddings": 1},
    "idle_samples": 2,
    "idle_gap_s": 2.5,
    "throughput_n": 60,
    "clients": 4,
}
LOAD_WINDOW_S = 4.0  # measured seconds per load cell (x --scale)
LOAD_WARMUP_S = 1.0  # unmeasured seconds before each cell's window
IDLE_TIMEOUT = 4.0  # stack 1: runners exit after 4 s idle, so cold boots need no restart
ENV_BUILD_TIMEOUT = 1800.0


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def prepare_environments(env_cache: Path, results: dict[str, Any]) -> None:
    """Build (or find) each example's environment before anything is timed."""
    from cogplane.environments import EnvironmentBuildError, ensure_environment, is_ready
    from gpu_runner.cog_server import read_cog_config

    for example in ("hello", "embeddings"):
        model_dir = EXAMPLES / example
        entry: dict[str, Any] = {"ok": False}
        started = time.monotonic()
        try:
            config = read_cog_config(model_dir)
            from cogplane.environments import environment_spec

            cached = is_ready(env_cache / environment_spec(config, model_dir).key)
            if not cached:
                say(f"building the {example} environment (first time only; not timed) ...")
            env = ensure_environment(config, model_dir, env_cache, timeout=ENV_BUILD_TIMEOUT)
            entry = {"ok": True, "was_cached": cached, "path": str(env)}
        except (EnvironmentBuildError, OSError, ValueError) as exc:
            entry["error"] = getattr(exc, "message", None) or str(exc)
        entry["seconds"] = round(time.monotonic() - started, 2)
        results["environments"][example] = entry


def run_section(results: dict[str, Any], name: str, fn, *args, **kwargs) -> Any:
    say(f"{name} ...")
    started = time.monotonic()
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others
        results["errors"].append(
            {"section": name, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=5)}
        )
        say(f"{name} FAILED: {exc}")
        return None
    say(f"{name} done in {time.monotonic() - started:.1f} s")
    return value


@contextlib.contextmanager
def running(results: dict[str, Any], stack, label: str, key: str):
    """Start the stack, run the block, always stop it; a failure is recorded, not raised."""
    say(f"starting {label} (COGPLANE_MAX_RUNNERS={stack.max_runners}) ...")
    try:
        stack.start()
        results["stacks"][key] = {"startup_s": stack.startup_seconds, "url": stack.url}
        yield
    except Exception as exc:  # noqa: BLE001 - the other stack's figures still count
        results["errors"].append({"section": label, "error": f"{type(exc).__name__}: {exc}"})
        say(f"{label} FAILED: {exc}")
    finally:
        say(f"stopping {label} ...")
        t0 = time.monotonic()
        stack.stop()
        results["stacks"].setdefault(key, {})["stop_s"] = time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (about a minute)")
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "bench" / "results.json",
        help="where to write the results (default bench/results.json)",
    )
    parser.add_argument(
        "--env-cache",
        type=Path,
        default=None,
        help="model environments cache shared by every stack the bench starts "
        "(default $COGPLANE_ENV_CACHE or ~/.cache/cogplane/envs)",
    )
    parser.add_argument("--clients", type=int, default=None, help="client threads for throughput")
    parser.add_argument(
        "--env-builds",
        choices=("none", "light", "full"),
        default=None,
        help="environment section: full = examples/embeddings (torch) and examples/whisper, pip vs uv, "
        "cold and warm cache (several minutes: pip builds torch slowly); light = whisper only; "
        "none = skip (default: full, light with --quick)",
    )
    parser.add_argument(
        "--sections",
        default="environment,cold,warm,throughput,load",
        help="comma-separated sections to run (default: all of environment,cold,warm,throughput,load)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="load section: multiply each cell's measured window (default 1: about 3 minutes in all "
        "on 2 cores); a bigger machine may also pass --load-runners/--load-clients",
    )
    parser.add_argument("--load-runners", default="1,2,4,8", help="load section: runner counts (default 1,2,4,8)")
    parser.add_argument("--load-clients", default="4,16,64", help="load section: client counts (default 4,16,64)")
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="start the stacks with COGPLANE_TLS=0 (default: the stack's own default)",
    )
    parser.add_argument(
        "--cog-async",
        action="store_true",
        help="start the stacks with COGPLANE_COG_SYNC=0: runners send every prediction to cog with "
        "Prefer: respond-async and take its end from cog's webhooks (the way before sync PUTs)",
    )
    parser.add_argument(
        "--api-workers",
        type=int,
        default=None,
        help="start the stacks with COGPLANE_API_WORKERS=N API processes (default: the stack's own, "
        "one per 4 cores); API CPU is summed over them",
    )
    args = parser.parse_args(argv)

    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    unknown = sections - {"environment", "cold", "warm", "throughput", "load"}
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    cfg = dict(QUICK if args.quick else FULL)
    cfg["env_builds"] = args.env_builds or ("light" if args.quick else "full")
    if "environment" not in sections:
        cfg["env_builds"] = "none"
    if args.clients:
        cfg["clients"] = args.clients
    tls = False if args.plain_http else None
    stack_env = {"COGPLANE_COG_SYNC": "0"} if args.cog_async else {}
    if args.api_workers:
        stack_env["COGPLANE_API_WORKERS"] = str(args.api_workers)
    env_cache = (args.env_cache or default_env_cache()).resolve()
    env_cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "meta": {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "mode": "quick" if args.quick else "full",
            "cog_path": "async + webhooks (--cog-async)" if args.cog_async else "sync where it can",
            "api_workers": args.api_workers or default_api_workers(os.cpu_count()),
            "env_cache": str(env_cache),
            "idle_timeout_stack1_s": IDLE_TIMEOUT,
        },
        "config": cfg,
        "environments": {},
        "environment_builds": [],
        "warm": None,
        "warm_after_idle": None,
        "cold": [],
        "throughput": [],
        "load": [],
        "stacks": {},
        "errors": [],
    }
    started = time.monotonic()
    say(f"environment cache: {env_cache}")
    prepare_environments(env_cache, results)

    if cfg["env_builds"] != "none":
        from bench.envbuild import EXAMPLES_BY_LEVEL, environment_builds

        results["environment_builds"] = (
            run_section(
                results,
                f"environment builds ({cfg['env_builds']})",
                environment_builds,
                EXAMPLES_BY_LEVEL[cfg["env_builds"]],
                ENV_BUILD_TIMEOUT,
                say,
            )
            or []
        )

    hello_ok = results["environments"]["hello"]["ok"]
    if not hello_ok:
        results["errors"].append(
            {"section": "environments", "error": "hello's environment could not be built: nothing to measure"}
        )
    elif sections & {"cold", "warm", "throughput"}:
        # Stack 1: one runner per pool, short idle timeout (cold boots by idle exit).
        stack = Stack(env_cache=env_cache, max_runners=1, idle_timeout=IDLE_TIMEOUT, tls=tls, extra_env=stack_env)
        with running(results, stack, "stack 1", "max_runners_1"):
            results["meta"]["api_scheme"] = stack.scheme
            idle_wait = IDLE_TIMEOUT + 30
            for example, inputs in (
                (
                    ("hello", scenarios.HELLO_INPUT),
                    ("embeddings", {"text": "a cold boot benchmark"}),
                )
                if "cold" in sections
                else ()
            ):
                if not results["environments"][example]["ok"]:
                    results["cold"].append(
                        {"model": f"examples/{example}", "skipped": results["environments"][example].get("error")}
                    )
                    continue
                value = run_section(
                    results,
                    f"cold boot examples/{example}",
                    scenarios.cold_boot,
                    stack,
                    f"examples/{example}",
                    inputs,
                    cfg["cold_runs"][example],
                    idle_wait=idle_wait,
                )
                if value:
                    results["cold"].append(value)
            if "warm" in sections:
                results["warm"] = run_section(results, "warm path vs direct cog", _warm, stack, env_cache, cfg)
                results["warm_after_idle"] = run_section(
                    results,
                    "warm after idle",
                    scenarios.warm_after_idle,
                    stack,
                    cfg["idle_gap_s"],
                    cfg["idle_samples"],
                )
            for fn in (scenarios.closed_loop, scenarios.open_burst) if "throughput" in sections else ():
                value = run_section(
                    results, f"throughput 1 runner ({fn.__name__})", fn, stack, cfg["throughput_n"], cfg["clients"]
                )
                if value:
                    results["throughput"].append({"runners": 1, **value})

    if hello_ok and "throughput" in sections:
        # Stack 2: up to two runners for the pool.
        stack = Stack(env_cache=env_cache, max_runners=2, idle_timeout=30, tls=tls, extra_env=stack_env)
        with running(results, stack, "stack 2", "max_runners_2"):
            serving = run_section(results, "warming 2 runners", scenarios.ensure_serving_runners, stack, 2)
            results["stacks"]["max_runners_2"]["serving_runners"] = serving
            for fn in (scenarios.closed_loop, scenarios.open_burst):
                value = run_section(
                    results, f"throughput 2 runners ({fn.__name__})", fn, stack, cfg["throughput_n"], cfg["clients"]
                )
                if value:
                    results["throughput"].append({"runners": serving or 2, **value})

    if "load" in sections and hello_ok:
        runners = tuple(int(x) for x in args.load_runners.split(",") if x.strip())
        clients = tuple(int(x) for x in args.load_clients.split(",") if x.strip())
        cfg["load"] = {
            "runners": runners,
            "clients": clients,
            "window_s": LOAD_WINDOW_S * args.scale * (0.5 if args.quick else 1.0),
            "warmup_s": LOAD_WARMUP_S,
        }

        def make_stack(count: int) -> Stack:
            return Stack(
                env_cache=env_cache,
                max_runners=count,
                idle_timeout=300,
                tls=tls,
                examples=("hello",),
                extra_env=stack_env,
            )

        results["load"] = (
            run_section(
                results,
                "load grid",
                scenarios.load_grid,
                make_stack,
                runners,
                clients,
                cfg["load"]["window_s"],
                LOAD_WARMUP_S,
                say,
            )
            or []
        )

    results["meta"]["bench_seconds"] = round(time.monotonic() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(report.render(results))
    print(f"results written to {args.json}")
    return 1 if results["errors"] else 0


def _warm(stack: Stack, env_cache: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    with stack.client() as client:
        schema = latest_schema(client, scenarios.HELLO)
    with DirectCog("hello", env_cache, schema) as direct:
        return scenarios.warm_overhead(stack, direct, cfg["warm_n"], cfg["warmup"])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
