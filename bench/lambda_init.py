"""Lambda init of the API function, measured from the packaged asset under Python 3.12.

`python -m bench.lambda_init [RUNS]` (after `make package-lambda`): each run is a fresh
`python3.12 -S -s` process with only the asset (`.build/lambda`) and the Lambda runtime's own
packages (boto3 & co., staged as `make sim-aws` does) on its path, as Lambda's init phase. It
reports, min, median and max over the runs:
- `import_ms` / `import_cpu_ms`: `import functions.api.handler` (what Lambda's init phase runs),
  wall and CPU time (CPU time moves less with the machine's load);
- `first_event_ms` / `first_event_cpu_ms`: what the first event adds before handling a request
  (JSON logging, the FastAPI app and its services built: `functions.api.handler._build()`);
- the asset's size (unzipped) and, with `-X importtime`, the heaviest imports of one run.
Figures, not assertions: run it on a quiet machine (README "Benchmarks").
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSET = REPO / ".build" / "lambda"

CHILD = r"""
import os, sys, time, json
sys.path[:0] = [os.environ["ASSET"], os.environ["RUNTIME"]]
w0, c0 = time.perf_counter(), time.process_time()
import functions.api.handler as h
w1, c1 = time.perf_counter(), time.process_time()
h._build()
w2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({"import_ms": (w1 - w0) * 1e3, "import_cpu_ms": (c1 - c0) * 1e3,
                  "first_event_ms": (w2 - w1) * 1e3, "first_event_cpu_ms": (c2 - c1) * 1e3}))
"""

# what the deployed function's environment gives the app (names only; nothing is called at build)
ENV = {
    "COGPLANE_BACKEND": "aws",
    "COGPLANE_TABLE_NAME": "cogplane-table",
    "COGPLANE_BUCKET": "cogplane-bucket",
    "COGPLANE_QUEUE_PREFIX": "cogplane-pool-",
    "COGPLANE_DLQ_ARN": "arn:aws:sqs:us-east-1:123456789012:cogplane-dlq",
    "COGPLANE_SIGNING_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:cogplane-signing-AbCdEf",
    # the API starts runners (infra/constructs/workers.py dispatch_environment): its ECS dispatcher
    "COGPLANE_ECS_DISPATCH": json.dumps(
        {
            "cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/cogplane-runners",
            "task_definitions": {"cpu": "arn:aws:ecs:us-east-1:123456789012:task-definition/cogplane-cpu:1"},
            "capacity_providers": {},
            "subnets": ["subnet-0123456789abcdef0"],
            "security_groups": ["sg-0123456789abcdef0"],
            "max_per_pool": 4,
        }
    ),
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def main(argv: list[str] | None = None) -> int:
    from simaws.lambdas import python312, stage_runtime

    argv = list(sys.argv[1:] if argv is None else argv)
    runs = int(argv[0]) if argv else 7
    if not (ASSET / "functions" / "api" / "handler.py").is_file():
        print("no Lambda asset: run `make package-lambda` first", file=sys.stderr)
        return 2
    python = python312()
    runtime = stage_runtime(REPO / ".build" / "lambda-runtime")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ASSET": str(ASSET), "RUNTIME": str(runtime), **ENV}
    # a first run compiles the asset's .pyc files (Lambda's zip has none either: CDK bundles sources)
    subprocess.run([python, "-S", "-s", "-c", CHILD], env=env, cwd=ASSET, check=True, capture_output=True)
    samples = []
    for _ in range(runs):
        out = subprocess.run([python, "-S", "-s", "-c", CHILD], env=env, cwd=ASSET, check=True, capture_output=True)
        samples.append(json.loads(out.stdout.decode().strip().splitlines()[-1]))
    trace = subprocess.run(
        [python, "-S", "-s", "-X", "importtime", "-c", CHILD], env=env, cwd=ASSET, capture_output=True, text=True
    ).stderr
    heaviest = []
    for line in trace.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[1].isdigit():
            heaviest.append((int(parts[1]), parts[2]))
    heaviest.sort(reverse=True)
    report = {
        "python": subprocess.run([python, "--version"], capture_output=True, text=True).stdout.strip(),
        "runs": runs,
        "asset_mb": round(size_bytes(ASSET) / 1e6, 1),
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    for key in ("import_ms", "import_cpu_ms", "first_event_ms", "first_event_cpu_ms"):
        values = [s[key] for s in samples]
        report[key] = {
            "min": round(min(values), 1),
            "median": round(statistics.median(values), 1),
            "max": round(max(values), 1),
        }
    report["heaviest_imports_ms"] = [(name, round(us / 1e3, 1)) for us, name in heaviest[:12]]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
