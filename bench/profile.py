"""`python -m bench.profile [SECONDS] [OUT_DIR]`: where the API process and a runner spend their CPU.

Starts a stack with one runner of `examples/hello`, warms it, and runs 4 clients sending
`Prefer: wait` predictions for SECONDS (default 20) while py-spy samples the API process and the
runner in `--gil` mode (only the thread holding the GIL: waiting is not counted). Writes py-spy's
raw (collapsed) stacks to OUT_DIR/api.txt and OUT_DIR/runner.txt and prints the functions that
held the GIL most, inclusive of what they call. py-spy is not a dependency of cogplane:
`pip install py-spy` (any venv), and put it on PATH or name it in $PY_SPY.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import scenarios
from bench.harness import Stack, default_env_cache


def top(path: Path, count: int = 45) -> list[tuple[float, str]]:
    """The functions on the most sampled stacks (inclusive), as (percent of samples, name)."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        total += int(n)
        for frame in {f.split(" (")[0] for f in stack.split(";")}:
            inclusive[frame] += int(n)
    return [(100 * n / total, name) for name, n in inclusive.most_common(count)] if total else []


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    seconds = float(args[0]) if args else 20.0
    out = Path(args[1]) if len(args) > 1 else Path(tempfile.mkdtemp(prefix="cogplane-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not spy:
        print("py-spy not found: pip install py-spy, then put it on PATH or set PY_SPY", file=sys.stderr)
        return 2
    stack = Stack(env_cache=default_env_cache(), max_runners=1, examples=("hello",))
    stack.start()
    try:
        scenarios.warm_runners(stack, 1, 30)
        assert stack.proc is not None
        targets = {"api": stack.proc.pid, "runner": stack.runner_pids()[0]}
        spies = [
            subprocess.Popen(  # noqa: S603 - py-spy's own argv, no shell
                [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "250", "-f", "raw", "--gil"]
                + ["--nonblocking", "-o", str(out / f"{name}.txt")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in targets.items()
        ]
        cell = scenarios.closed_loop_for(stack, 4, max(1.0, seconds - 2), 1.0)
        for spy_proc in spies:
            spy_proc.wait()
    finally:
        stack.stop()
    print(f"{cell['per_s']:.1f} predictions/s, CPU ms per prediction {cell['cpu_ms_per_prediction']}")
    for name in targets:
        print(f"\n{name} (inclusive % of GIL-holding samples; raw stacks: {out / (name + '.txt')})")
        for percent, frame in top(out / f"{name}.txt"):
            print(f"  {percent:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
