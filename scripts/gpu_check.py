"""GPU check (run on a machine with an NVIDIA GPU and torch+CUDA, e.g. the lent device):
the runner's CogServer launches a real cog server for a CUDA model in an environment that sees
the GPU (its environment allowlist must pass CUDA/NVIDIA variables), READY by the health body,
and predictions run on the GPU. Prints and writes JSON: cold boot to READY, setup, predict.

Usage: python3 scripts/gpu_check.py ENV_PYTHON OUT_DIR
(ENV_PYTHON: a python with cog==0.23.1 and torch+CUDA; the device script builds one.)
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cogplane.schema import generate_schema  # noqa: E402
from gpu_runner.cog_server import CogServer, write_schema  # noqa: E402


def post(url: str, body: dict) -> tuple[int, dict]:
    while True:
        req = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 409:  # the slot frees right after the previous response
                time.sleep(0.01)
                continue
            return exc.code, json.loads(exc.read() or b"{}")


def main() -> int:
    env_python, out = Path(sys.argv[1]), Path(sys.argv[2])
    env_dir = env_python.parent.parent
    model = Path(tempfile.mkdtemp()) / "cuda_matmul"
    shutil.copytree(REPO / "tests" / "fixtures" / "gpu_models" / "cuda_matmul", model)
    result: dict = {}
    t0 = time.perf_counter()
    schema = generate_schema(model, python=str(env_python))
    result["schema_seconds"] = time.perf_counter() - t0
    write_schema(model, schema)
    server = CogServer(model, env_dir, log_path=out / "cog.log", setup_timeout=300)
    t0 = time.perf_counter()
    server.start()
    try:
        health = server.wait_ready(timeout=300)
        result["ready_seconds"] = time.perf_counter() - t0
        result["health"] = health.status
        result["setup_logs"] = health.setup_logs[-2000:]
        if not health.serving:
            result["error"] = health.error
            return 1
        runs = []
        for size in (4096, 4096, 16384):
            t1 = time.perf_counter()
            status, body = post(f"{server.url}/predictions", {"input": {"size": size}})
            runs.append(
                {
                    "http": status,
                    "wall_seconds": time.perf_counter() - t1,
                    "status": body.get("status"),
                    "output": json.loads(body["output"]) if body.get("output") else None,
                    "error": body.get("error"),
                    "predict_time": (body.get("metrics") or {}).get("predict_time"),
                }
            )
        result["runs"] = runs
        status, body = post(f"{server.url}/predictions", {"input": {"size": 99999}})
        result["bad_input_http"] = status
        return 0 if all(r["status"] == "succeeded" and r["output"]["matches_cpu"] for r in runs) else 1
    finally:
        server.stop()
        result["left_behind"] = server.group_pids()
        (out / "gpu_check.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
