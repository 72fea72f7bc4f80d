"""The printed table."""

from __future__ import annotations

from typing import Any


def _f(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def _table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        rest = "  ".join(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True))
        return (indent + first + "  " + rest).rstrip()

    return [line(headers), indent + "-" * (sum(widths) + 2 * (len(widths) - 1)), *(line(r) for r in rows)]


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    out = [
        "",
        "=" * 100,
        f"cogplane bench ({meta['mode']}) {meta['when']}  host {meta['host']}: {meta['cpus']} CPUs, "
        f"{meta['cpu']}, Python {meta['python']}",
        f"runner -> cog: {meta.get('cog_path', 'sync where it can')}; API processes: {meta.get('api_workers', 1)}",
        "=" * 100,
    ]
    envs = results.get("environments", {})
    parts = []
    for name, env in envs.items():
        if env.get("ok"):
            how = "already cached" if env.get("was_cached") else f"built now in {env['seconds']:.0f} s"
            parts.append(f"{name}: {how}")
        else:
            parts.append(f"{name}: NOT AVAILABLE ({env.get('error')})")
    out.append("Model environments, prepared before any timing (cache " + meta["env_cache"] + "):")
    out.append("  " + "; ".join(parts))
    stacks = results.get("stacks", {})
    if stacks:
        out.append(
            "Stacks started: "
            + "; ".join(
                f"{k}: up in {_f(v.get('startup_s'), 1)} s, stopped in {_f(v.get('stop_s'), 1)} s"
                for k, v in stacks.items()
            )
        )

    # 1. warm
    warm = results.get("warm")
    scheme = meta.get("api_scheme", "?")
    out += [
        "",
        f"1. WARM PATH  examples/hello, sync predictions, one keep-alive client each "
        f"(cogplane over {scheme}, cog over http), interleaved",
    ]
    if warm:
        out[-1] += f" (n={warm['n']} each after {warm['warmup']} warm-up)"
        rows = []
        for label, key in (
            ("cogplane (POST /v1/models/.../predictions, Prefer: wait)", "cogplane_ms"),
            ("cog server direct (POST /predictions)", "direct_ms"),
        ):
            s = warm[key]
            rows.append(
                [
                    label,
                    _f(s["p50"], 2),
                    _f(s["p90"], 2),
                    _f(s["p99"], 2),
                    _f(s["mean"], 2),
                    _f(s["min"], 2),
                    _f(s["max"], 1),
                ]
            )
        p = warm["paired_added_ms"]
        rows.append(
            [
                "added by cogplane (p50(A)-p50(B), p90(A)-p90(B))",
                _f(warm["added_p50_ms"], 2),
                _f(warm["added_p90_ms"], 2),
                "",
                "",
                "",
                "",
            ]
        )
        rows.append(
            [
                "added, per pair (A_i - B_i)",
                _f(p["p50"], 2),
                _f(p["p90"], 2),
                _f(p["p99"], 2),
                _f(p["mean"], 2),
                _f(p["min"], 2),
                _f(p["max"], 1),
            ]
        )
        h = warm.get("direct_async_webhook_ms")
        if h:
            rows.append(
                [
                    f"(ref.) cog direct the runner's way: PUT async + webhook "
                    f"({warm['direct_async_webhooks_per_prediction']:.1f} hooks)",
                    _f(h["p50"], 2),
                    _f(h["p90"], 2),
                    _f(h["p99"], 2),
                    _f(h["mean"], 2),
                    _f(h["min"], 2),
                    _f(h["max"], 1),
                ]
            )
        out += _table(["latency, ms", "p50", "p90", "p99", "mean", "min", "max"], rows)
        ok = warm["added_p50_ms"] <= warm["target_p50_ms"]
        out.append(
            f"  target: <= {warm['target_p50_ms']:.0f} ms added at p50 -> {_verdict(ok)} "
            f"({warm['added_p50_ms']:.2f} ms); direct needed {warm['direct_409_retries']} retries of 409"
        )
        b = warm["cogplane_breakdown_ms"]
        out.append(
            f"  where cogplane's time goes (metrics, mean ms): API+wait {_f(b['api_ms'], 2)} | "
            f"queue {_f(b['queue_ms'], 2)} | runner {_f(b['runner_ms'], 2)} | predict "
            f"{_f(b['predict_ms'], 2)} (direct cog's own predict_time {_f(warm['direct_predict_ms'], 2)})"
        )
        ph = warm.get("phases_ms")
        if ph:
            out.append(
                "  by timestamps (p50 / mean ms): "
                + " | ".join(
                    f"{label} {_f(ph[k]['p50'], 2)} / {_f(ph[k]['mean'], 2)}"
                    for k, label in (
                        ("api_in", "send->created_at"),
                        ("queue", "created->started"),
                        ("runner", "started->completed"),
                        ("api_out", "completed->response"),
                    )
                )
            )
        f = warm["api_get_floor_ms"]
        out.append(f"  API floor: GET /v1/predictions/{{id}} p50 {_f(f['p50'], 2)} ms, p90 {_f(f['p90'], 2)} ms")
    else:
        out.append("  not measured (see errors)")
    idle = results.get("warm_after_idle")
    if idle:
        b = idle["breakdown_ms"]
        out.append(
            f"  warm runner idle {idle['gap_s']} s before each request (n={idle['n']}): latency p50 "
            f"{_f(idle['latency_ms']['p50'], 1)} ms, mean queue_time {_f(b['queue_ms'], 1)} ms "
            f"(back to back: {_f(warm['cogplane_breakdown_ms']['queue_ms'], 2) if warm else '-'} ms)"
        )

    # 2. cold
    out += [
        "",
        "2. COLD BOOT  no runner warm (runner exited on idle), environment cached; "
        "poll GET every 10 ms until `processing`",
    ]
    rows = []
    verdicts = []
    for cold in results.get("cold", []):
        if cold.get("skipped"):
            rows.append([cold["model"], "skipped", "", "", "", "", "", "", ""])
            out_skip = f"  {cold['model']} skipped: {cold['skipped']}"
            verdicts.append(out_skip)
            continue
        for i, s in enumerate(cold["samples"], 1):
            rows.append(
                [
                    f"{cold['model']} #{i}",
                    _f(s["create_to_processing"], 3),
                    _f(s["created_to_started"], 3),
                    _f(s["boot_time"], 3),
                    _f(s["setup_time"], 3),
                    _f(s["queue_time"], 3),
                    _f(s["cog_setup"], 3),
                    _f(s["overhead"], 3),
                    _verdict(None if s["overhead"] is None else s["overhead"] <= cold["target_s"]),
                ]
            )
        m = cold["median"]
        if len(cold["samples"]) > 1:
            rows.append(
                [
                    f"{cold['model']} median",
                    _f(m["create_to_processing"], 3),
                    _f(m["created_to_started"], 3),
                    _f(m["boot_time"], 3),
                    _f(m["setup_time"], 3),
                    _f(m["queue_time"], 3),
                    _f(m["cog_setup"], 3),
                    _f(m["overhead"], 3),
                    _verdict(None if m["overhead"] is None else m["overhead"] <= cold["target_s"]),
                ]
            )
    if rows:
        out += _table(
            ["seconds", "create->proc", "server", "boot", "setup", "queue", "setup()", "overhead", "<=1s"], rows
        )
        out.append(
            "  create->proc: client-observed; server: started_at - created_at; boot/setup/queue: the "
            "prediction's metrics\n  (boot = runner spawn -> cog server launched, setup = launch -> READY); "
            "setup(): the model's own setup() from cog's\n  health-check (setup.completed_at - "
            "started_at); overhead = create->proc - setup() (target <= 1 s)"
        )
    out += verdicts
    if not rows and not verdicts:
        out.append("  not measured (see errors)")

    # 3. throughput
    out += ["", "3. THROUGHPUT  examples/hello, completed predictions/s; time split in mean ms per prediction"]
    rows = []
    for t in results.get("throughput", []):
        b = t["breakdown_ms"]
        rows.append(
            [
                str(t["runners"]),
                t["mode"],
                str(t["n"]),
                _f(t["wall_s"], 2),
                _f(t["per_s"], 1),
                _f(t["latency_ms"]["p50"], 1),
                _f(t["latency_ms"]["p90"], 1),
                _f(b.get("api_ms"), 1),
                _f(b["queue_ms"], 1),
                _f(b["runner_ms"], 1),
                _f(b["predict_ms"], 2),
            ]
        )
    if rows:
        out += _table(
            ["runners", "mode", "n", "wall s", "pred/s", "lat p50", "lat p90", "API", "queue", "runner", "predict"],
            rows,
        )
        out.append(
            "  lat: client latency (closed loop) or total_time (burst); API = latency - total_time; "
            "runner = total_time - queue - predict\n  (claim, state writes, PUT to cog, webhook back)"
        )
        out.append("  CPU ms per prediction (2 cores = 2000 CPU ms per second of wall time):")
        for t in results.get("throughput", []):
            c = t.get("cpu_ms_per_prediction")
            if c:
                out.append(
                    f"    {t['runners']} runner(s), {t['mode'].split(',')[0]:<11}: API process "
                    f"{c['api']:.2f} | runners {c['runners']:.2f} | cog servers+workers {c['cog']:.2f}"
                    f" | bench clients {c['bench_clients']:.2f} | sum {sum(c.values()):.2f}"
                )
    else:
        out.append("  not measured (see errors)")

    # 4. load grid
    out += [
        "",
        "4. LOAD  examples/hello, closed loop with Prefer: wait; completed predictions/s in the measured window; "
        "CPU ms per prediction",
    ]
    load = results.get("load") or []
    if load:
        rows = []
        for r in load:
            if r.get("error"):
                rows.append([str(r["runners"]), str(r.get("clients", "-")), "ERROR " + r["error"][:60], *[""] * 6])
                continue
            c = r["cpu_ms_per_prediction"]
            rows.append(
                [
                    str(r["runners"]),
                    str(r["clients"]),
                    _f(r["per_s"], 1),
                    _f(r["latency_ms"]["p50"], 1),
                    _f(r["latency_ms"]["p99"], 1),
                    _f(c["api"], 2),
                    _f(c["runners"], 2),
                    _f(c["cog"], 2),
                    _f(c["api"] + c["runners"], 2),
                ]
            )
        out += _table(["runners", "clients", "pred/s", "p50 ms", "p99 ms", "API", "runners", "cog", "platform"], rows)
        good = [r for r in load if not r.get("error")]
        if good:
            best = max(r["per_s"] for r in good)
            at64 = [r["per_s"] for r in good if r["clients"] == max(x["clients"] for x in good)]
            ratio = max(at64) / best if at64 and best else None
            worst = max(r["latency_ms"]["p99"] / r["latency_ms"]["p50"] for r in good if r["latency_ms"]["p50"])
            platform = min(r["cpu_ms_per_prediction"]["api"] + r["cpu_ms_per_prediction"]["runners"] for r in good)
            out.append(
                f"  best {best:.1f}/s; at the most clients {_f(ratio * 100 if ratio else None, 0)} % of the best "
                f"(target >= 90 %); worst p99/p50 {worst:.1f} (target <= 5); lowest platform CPU (API + runners) "
                f"{platform:.2f} ms per prediction (target <= 3)"
            )
    else:
        out.append("  not measured (see errors)")

    # 5. environment builds
    builds = results.get("environment_builds") or []
    out += [
        "",
        "5. ENVIRONMENT BUILDS  seconds to build a model environment (fresh cache root each; warm = same cache again)",
    ]
    if builds:
        rows = []
        by_model: dict[str, dict[str, dict]] = {}
        for b in builds:
            by_model.setdefault(b["model"], {})[b["installer"]] = b
        for model, arms in by_model.items():
            for phase in ("cold", "warm"):
                pip, uv = (arms.get(i, {}).get(phase) or {} for i in ("pip", "uv"))
                ratio = (
                    f"{pip['seconds'] / uv['seconds']:.1f}x"
                    if pip.get("ok") and uv.get("ok") and uv["seconds"] > 0
                    else "-"
                )
                rows.append(
                    [
                        f"{model} ({phase} cache)",
                        _f(pip.get("seconds"), 1) if pip.get("ok") else f"FAILED {pip.get('error', '')[:40]}",
                        _f(uv.get("seconds"), 1) if uv.get("ok") else f"FAILED {uv.get('error', '')[:40]}",
                        ratio,
                        str(uv.get("env_mb", "-")),
                    ]
                )
        out += _table(["seconds", "pip", "uv", "pip/uv", "env MB"], rows)
        out.append("  target: a torch environment whose wheels are cached builds in <= 15 s")
    else:
        out.append("  not measured (--env-builds none, or see errors)")

    errors = results.get("errors", [])
    if errors:
        out += ["", "ERRORS"]
        out += [f"  {e['section']}: {e['error']}" for e in errors]
    out += ["", f"bench took {meta.get('bench_seconds', '-')} s", "=" * 100]
    return "\n".join(out)
