"""The measurements. Each returns plain dicts (seconds, unless a key ends in `_ms`)."""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.harness import (
    TERMINAL,
    DirectCog,
    PredictionError,
    Stack,
    create_async,
    get_prediction,
    parse_time,
    predict_sync,
    wait_all,
)
from bench.stats import mean, paired_difference, percentile, summarize

HELLO = "examples/hello"
HELLO_INPUT = {"prompt": "bench"}
# 0: through cogplane, 1: straight to cog (sync), 2: straight to cog the runner's way (async + webhook);
# the order rotates so that no arm always runs first or right after another.
ORDERS = ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (1, 0, 2), (2, 1, 0))


def _ms_summary(seconds: list[float]) -> dict[str, Any]:
    return summarize([s * 1000.0 for s in seconds])


def _metric_means(bodies: list[dict], latencies: list[float] | None = None) -> dict[str, float]:
    """Mean of where a prediction's time went, in ms: queue, predict, runner (the rest of
    total_time: claim, state writes, the PUT to cog, its webhook) and, given client latencies,
    api (latency - total_time: HTTP, auth, validation, the create write, `Prefer: wait` polling)."""
    metrics = [b.get("metrics") or {} for b in bodies]
    queue = [m.get("queue_time", 0.0) for m in metrics]
    predict = [m.get("predict_time", 0.0) for m in metrics]
    total = [m.get("total_time", 0.0) for m in metrics]
    out = {
        "queue_ms": mean(queue) * 1000,
        "predict_ms": mean(predict) * 1000,
        "runner_ms": mean([t - q - p for t, q, p in zip(total, queue, predict, strict=True)]) * 1000,
        "total_ms": mean(total) * 1000,
    }
    if latencies is not None:
        out["api_ms"] = mean([lat - t for lat, t in zip(latencies, total, strict=True)]) * 1000
        out["latency_ms"] = mean(latencies) * 1000
    return out


# --- 1. warm path ------------------------------------------------------------------------------
def warm_overhead(stack: Stack, direct: DirectCog, n: int, warmup: int) -> dict[str, Any]:
    """n sync predictions through cogplane and n straight to cog, alternating A/B and B/A."""
    with stack.client() as client:
        for _ in range(warmup):
            predict_sync(client, HELLO, HELLO_INPUT)
            direct.predict(HELLO_INPUT)
            direct.predict_async(HELLO_INPUT)
        direct.retries = 0
        via, straight, hooked, bodies, cog_predict, sent, received = [], [], [], [], [], [], []
        webhooks: list[int] = []
        for i in range(n):
            for which in ORDERS[i % len(ORDERS)]:
                if which == 0:
                    sent.append(time.time())
                    latency, body = predict_sync(client, HELLO, HELLO_INPUT)
                    received.append(time.time())
                    via.append(latency)
                    bodies.append(body)
                elif which == 1:
                    latency, body = direct.predict(HELLO_INPUT)
                    straight.append(latency)
                    cog_predict.append((body.get("metrics") or {}).get("predict_time", 0.0))
                else:
                    latency, events = direct.predict_async(HELLO_INPUT)
                    hooked.append(latency)
                    webhooks.append(len(events))
        # the API's floor: one authenticated GET of a prediction
        floor = []
        last = bodies[-1]["id"]
        for _ in range(min(n, 50)):
            t0 = time.perf_counter()
            get_prediction(client, last)
            floor.append(time.perf_counter() - t0)
    added = paired_difference(via, straight)
    # the same clock on both sides (one machine): split the cogplane request along its timestamps
    phases: dict[str, list[float]] = {"api_in": [], "queue": [], "runner": [], "api_out": []}
    for t_sent, t_received, body in zip(sent, received, bodies, strict=True):
        created = parse_time(body["created_at"]).timestamp()
        started = parse_time(body["started_at"]).timestamp()
        completed = parse_time(body["completed_at"]).timestamp()
        phases["api_in"].append(created - t_sent)
        phases["queue"].append(started - created)
        phases["runner"].append(completed - started)
        phases["api_out"].append(t_received - completed)
    return {
        "model": HELLO,
        "n": n,
        "warmup": warmup,
        "cogplane_ms": _ms_summary(via),
        "direct_ms": _ms_summary(straight),
        "added_p50_ms": (percentile(via, 50) - percentile(straight, 50)) * 1000,
        "added_p90_ms": (percentile(via, 90) - percentile(straight, 90)) * 1000,
        "paired_added_ms": _ms_summary(added),
        "direct_409_retries": direct.retries,
        "cogplane_breakdown_ms": _metric_means(bodies, via),
        "direct_predict_ms": mean(cog_predict) * 1000,
        "direct_async_webhook_ms": _ms_summary(hooked),
        "direct_async_webhooks_per_prediction": mean(webhooks),
        "phases_ms": {k: _ms_summary(v) for k, v in phases.items()},
        "api_get_floor_ms": _ms_summary(floor),
        "target_p50_ms": 3.0,  # issue 13: within 3 ms of cog at p50
        "raw_ms": {
            "cogplane": [round(x * 1000, 3) for x in via],
            "direct": [round(x * 1000, 3) for x in straight],
            "direct_async_webhook": [round(x * 1000, 3) for x in hooked],
            "completed_to_response": [round(x * 1000, 3) for x in phases["api_out"]],
            "created_to_completed": [
                round((q + r) * 1000, 3) for q, r in zip(phases["queue"], phases["runner"], strict=True)
            ],
        },
    }


def warm_after_idle(stack: Stack, gap: float, samples: int) -> dict[str, Any]:
    """A warm runner that has been idle a while (but not long enough to exit) polls its queue
    more slowly (gpu_runner/runner.py): the queue_time of the next prediction shows it."""
    latencies, bodies = [], []
    with stack.client() as client:
        predict_sync(client, HELLO, HELLO_INPUT)
        for _ in range(samples):
            time.sleep(gap)
            latency, body = predict_sync(client, HELLO, HELLO_INPUT)
            latencies.append(latency)
            bodies.append(body)
    return {
        "gap_s": gap,
        "n": samples,
        "latency_ms": _ms_summary(latencies),
        "breakdown_ms": _metric_means(bodies, latencies),
    }


# --- 2. cold boot ------------------------------------------------------------------------------
def _setup_seconds(health: dict | None) -> float | None:
    setup = (health or {}).get("setup") or {}
    if not setup.get("started_at") or not setup.get("completed_at"):
        return None
    return (parse_time(setup["completed_at"]) - parse_time(setup["started_at"])).total_seconds()


def cold_boot(
    stack: Stack, model: str, inputs: dict, runs: int, *, idle_wait: float, poll: float = 0.01, timeout: float = 300.0
) -> dict[str, Any]:
    """Create a prediction with no runner warm; poll GET every `poll` s until `processing`."""
    samples = []
    with stack.client() as client:
        for _ in range(runs):
            if not stack.wait_no_runners(idle_wait):
                raise PredictionError(f"a runner is still warm after {idle_wait} s")
            t0 = time.perf_counter()
            prediction_id = create_async(client, model, inputs)["id"]
            seen_processing = None
            while True:
                body = get_prediction(client, prediction_id)
                now = time.perf_counter()
                if seen_processing is None and body["status"] != "starting":
                    seen_processing = now - t0
                if body["status"] in TERMINAL:
                    break
                if now - t0 > timeout:
                    raise PredictionError(f"{model}: not done after {timeout} s")
                time.sleep(poll)
            if body["status"] != "succeeded":
                raise PredictionError(f"{model}: {body['status']}: {body.get('error')}")
            healths = stack.cog_healths()
            setup = _setup_seconds(healths[0]) if len(healths) == 1 else None
            metrics = body.get("metrics") or {}
            server_side = (parse_time(body["started_at"]) - parse_time(body["created_at"])).total_seconds()
            observed = seen_processing if seen_processing is not None else server_side
            samples.append(
                {
                    "create_to_processing": observed,
                    "created_to_started": server_side,
                    "boot_time": metrics.get("boot_time"),
                    "setup_time": metrics.get("setup_time"),
                    "queue_time": metrics.get("queue_time"),
                    "predict_time": metrics.get("predict_time"),
                    "cog_setup": setup,
                    "overhead": None if setup is None else observed - setup,
                }
            )

    def med(key: str) -> float | None:
        values = [s[key] for s in samples if s.get(key) is not None]
        return percentile(values, 50) if values else None

    return {
        "model": model,
        "runs": runs,
        "samples": samples,
        "median": {k: med(k) for k in samples[0]} if samples else {},
        "target_s": 1.0,
    }


# --- 3. throughput -----------------------------------------------------------------------------
def ensure_serving_runners(stack: Stack, count: int, timeout: float = 40.0) -> int:
    """Get `count` runners READY: a sustained backlog makes the dispatcher add runners."""
    with stack.client() as client:
        predict_sync(client, HELLO, HELLO_INPUT)
        deadline = time.monotonic() + timeout
        pending: list[str] = []
        while stack.serving_runners() < count and time.monotonic() < deadline:
            pending += [create_async(client, HELLO, HELLO_INPUT)["id"] for _ in range(20)]
            time.sleep(0.1)
        wait_all(client, pending, timeout=120, interval=0.1)
    return stack.serving_runners()


def _cpu_per_prediction(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU ms per prediction by process group (runners that started in between count from 0)."""
    return {k: max(0.0, after[k] - before.get(k, 0.0)) * 1000 / max(1, n) for k in after}


def closed_loop(stack: Stack, total: int, clients: int) -> dict[str, Any]:
    """`clients` threads, each sending sync predictions (Prefer: wait) back to back."""
    lock = threading.Lock()
    issued = 0
    results: list[tuple[float, dict]] = []
    errors: list[str] = []

    def worker() -> None:
        nonlocal issued
        with stack.client() as client:
            while True:
                with lock:
                    if issued >= total or errors:
                        return
                    issued += 1
                try:
                    latency, body = predict_sync(client, HELLO, HELLO_INPUT)
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(str(exc))
                    return
                with lock:
                    results.append((latency, body))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    cpu0 = stack.cpu_snapshot()
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    cpu = _cpu_per_prediction(cpu0, stack.cpu_snapshot(), total)
    if errors:
        raise PredictionError(errors[0])
    latencies = [r[0] for r in results]
    return {
        "mode": f"closed loop, {clients} clients, Prefer: wait",
        "n": len(results),
        "wall_s": wall,
        "cpu_ms_per_prediction": cpu,
        "per_s": len(results) / wall,
        "latency_ms": _ms_summary(latencies),
        "breakdown_ms": _metric_means([r[1] for r in results], latencies),
    }


def open_burst(stack: Stack, total: int, clients: int) -> dict[str, Any]:
    """`total` async creates fired from `clients` threads, then wait for all. The rate is
    taken from the server's timestamps: first created_at to last completed_at."""
    ids: list[str] = []
    lock = threading.Lock()
    errors: list[str] = []
    per_thread = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]

    def fire(count: int) -> None:
        with stack.client() as client:
            for _ in range(count):
                try:
                    prediction = create_async(client, HELLO, HELLO_INPUT)
                except Exception as exc:  # noqa: BLE001
                    errors.append(str(exc))
                    return
                with lock:
                    ids.append(prediction["id"])

    threads = [threading.Thread(target=fire, args=(c,), daemon=True) for c in per_thread]
    cpu0 = stack.cpu_snapshot()
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fired = time.perf_counter() - t0
    if errors:
        raise PredictionError(errors[0])
    with stack.client() as client:
        # the queue is FIFO: wait on the last one first (cheap), then read them all once
        wait_all(client, [ids[-1]], timeout=120, interval=0.02)
        cpu = _cpu_per_prediction(cpu0, stack.cpu_snapshot(), total)  # the final read not included
        done = wait_all(client, ids, timeout=120, interval=0.05)
    bodies = list(done.values())
    failed = [b for b in bodies if b["status"] != "succeeded"]
    if failed:
        raise PredictionError(f"{len(failed)} of {len(bodies)} failed: {failed[0].get('error')}")
    first = min(parse_time(b["created_at"]) for b in bodies)
    last = max(parse_time(b["completed_at"]) for b in bodies)
    wall = (last - first).total_seconds()
    return {
        "mode": f"burst, {total} async creates from {clients} threads",
        "n": len(bodies),
        "cpu_ms_per_prediction": cpu,
        "wall_s": wall,
        "per_s": len(bodies) / wall,
        "create_per_s": len(bodies) / fired,
        "latency_ms": _ms_summary([b["metrics"]["total_time"] for b in bodies]),
        "breakdown_ms": _metric_means(bodies),
    }


# --- 4. load grid ------------------------------------------------------------------------------
def closed_loop_for(stack: Stack, clients: int, seconds: float, warmup: float) -> dict[str, Any]:
    """`clients` threads sending sync predictions back to back for `warmup` + `seconds`; counted:
    the predictions completed inside the measured window, with the CPU used in that window."""
    stop = threading.Event()
    window: dict[str, float] = {}
    lock = threading.Lock()
    latencies: list[float] = []
    completed = 0
    errors: list[str] = []

    def worker() -> None:
        nonlocal completed
        with stack.client() as client:
            while not stop.is_set():
                try:
                    latency, _ = predict_sync(client, HELLO, HELLO_INPUT)
                except Exception as exc:  # noqa: BLE001 - reported below
                    with lock:
                        errors.append(str(exc))
                    if len(errors) > 20:
                        return
                    continue
                done = time.perf_counter()
                with lock:
                    start, end = window.get("start"), window.get("end")
                    if start is not None and end is None and done >= start:
                        completed += 1
                        latencies.append(latency)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    cpu0 = stack.cpu_snapshot()
    with lock:
        window["start"] = time.perf_counter()
    time.sleep(seconds)
    with lock:
        window["end"] = time.perf_counter()
    cpu1 = stack.cpu_snapshot()
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    wall = window["end"] - window["start"]
    cpu = _cpu_per_prediction(cpu0, cpu1, completed)
    if not latencies:
        raise PredictionError(errors[0] if errors else "no prediction completed in the window")
    lat = _ms_summary(latencies)
    return {
        "clients": clients,
        "n": completed,
        "wall_s": wall,
        "per_s": completed / wall,
        "latency_ms": {"p50": lat["p50"], "p99": lat["p99"], "mean": lat["mean"], "max": lat["max"]},
        "cpu_ms_per_prediction": {k: cpu[k] for k in ("api", "runners", "cog")},
        "client_cpu_ms_per_prediction": cpu["bench_clients"],
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def warm_runners(stack: Stack, count: int, timeout: float) -> int:
    """Keep a small backlog until `count` runners serve (the dispatcher adds one per ~2 s while a
    backlog persists), then drain it. The queue is FIFO: waiting on the newest job drains it."""
    with stack.client() as client:
        predict_sync(client, HELLO, HELLO_INPUT)
        deadline = time.monotonic() + timeout
        last = None
        while stack.serving_runners() < count and time.monotonic() < deadline:
            backlog = [create_async(client, HELLO, HELLO_INPUT)["id"] for _ in range(8)]
            last = backlog[-1]
            time.sleep(0.2)
            if get_prediction(client, backlog[0])["status"] in TERMINAL:
                continue  # drained already: more are needed to look like a backlog
        if last is not None:
            wait_all(client, [last], timeout=120, interval=0.05)
    return stack.serving_runners()


def load_grid(
    make_stack,
    runners: tuple[int, ...],
    clients: tuple[int, ...],
    seconds: float,
    warmup: float,
    say=print,
) -> list[dict[str, Any]]:
    """For each runner count, a stack whose pool may have exactly that many runners, warmed up to
    them, then one closed loop per client count. A failed cell is recorded and the grid goes on."""
    rows: list[dict[str, Any]] = []
    for count in runners:
        stack = make_stack(count)
        try:
            stack.start()
            serving = warm_runners(stack, count, timeout=15 + 4 * count)
            for n in clients:
                say(f"load: {serving} runner(s), {n} clients ...")
                try:
                    cell = closed_loop_for(stack, n, seconds, warmup)
                except Exception as exc:  # noqa: BLE001 - the other cells still count
                    rows.append({"runners": count, "clients": n, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                rows.append({"runners": count, "serving_runners": serving, **cell})
                say(
                    f"  {cell['per_s']:.1f}/s p50 {cell['latency_ms']['p50']:.1f} ms "
                    f"p99 {cell['latency_ms']['p99']:.1f} ms cpu {cell['cpu_ms_per_prediction']}"
                )
        except Exception as exc:  # noqa: BLE001
            rows.append({"runners": count, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            stack.stop()
    return rows
