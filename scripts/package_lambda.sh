#!/usr/bin/env bash
# Stage the one Lambda asset the four functions share: cogplane + functions + their Linux wheels.
# No Docker: pip downloads manylinux wheels for the Lambda runtime (Python 3.12, x86_64).
# boto3/botocore are left out on purpose: the Lambda runtime provides them (saves ~25 MB).
# Usage: scripts/package_lambda.sh [OUT_DIR]   (default .build/lambda; infra reads cogplane:lambdaAsset)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-.build/lambda}"
PY="${PYTHON:-.venv/bin/python}"
PYVER="${LAMBDA_PYTHON_VERSION:-3.12}"
PLATFORM="${LAMBDA_PLATFORM:-manylinux2014_x86_64}"

# What the functions import: pyproject's runtime dependencies (read from it, so a new one is never
# missed: the simulated deployment found jinja2 and then cryptography missing here) minus boto3
# (the runtime provides it), cog and uv (runners only), plus pyyaml (cog.yaml parsing) that cog brings
# along elsewhere. uvicorn (pure Python without extras) serves the stream function under LWA;
# cryptography: stream URL tokens and sealed secret inputs (cogplane.sealing).
mapfile -t DEPS < <("$PY" - <<'PYEOF'
import re
import tomllib

with open("pyproject.toml", "rb") as fh:
    deps = tomllib.load(fh)["project"]["dependencies"]
for dep in deps:
    if re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0].lower() not in ("boto3", "cog", "uv"):
        print(dep)
print("pyyaml>=6")
PYEOF
)
[ "${#DEPS[@]}" -gt 3 ] || { echo "could not read the dependencies from pyproject.toml" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
"$PY" -m pip install --quiet --disable-pip-version-check --no-compile \
  --platform "$PLATFORM" --implementation cp --python-version "$PYVER" \
  --only-binary=:all: --target "$OUT" "${DEPS[@]}"
cp -r cogplane functions "$OUT"/
chmod 755 "$OUT"/functions/stream/run.sh  # the stream function's handler: the LWA layer execs it
# Nothing the functions never read: caches, tests of dependencies, the web UI's sources stay.
find "$OUT" -name '__pycache__' -type d -prune -exec rm -rf {} +
find "$OUT" -name '*.dist-info' -type d -prune -exec sh -c 'rm -rf "$1"/RECORD' _ {} \;
rm -rf "$OUT"/bin

# Lambda's file system is read-only: without shipped bytecode every cold start compiles every
# module (measured: ~675 ms vs ~230-310 ms to import the API handler). unchecked-hash: the asset
# zip's timestamps are normalised, so the .pyc must not be validated against source mtimes.
COMPILER="${LAMBDA_COMPILER:-}"
if [ -z "$COMPILER" ]; then
  for candidate in "python$PYVER" "$(command -v pyenv >/dev/null && PYENV_VERSION="$(pyenv versions --bare | grep "^$PYVER" | tail -1)" pyenv which python 2>/dev/null)"; do
    if [ -n "$candidate" ] && "$candidate" -c "import sys; assert sys.version.startswith('$PYVER')" 2>/dev/null; then
      COMPILER="$candidate"; break
    fi
  done
fi
if [ -n "$COMPILER" ]; then
  "$COMPILER" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$OUT" >/dev/null
else
  echo "warning: no Python $PYVER found to precompile bytecode; cold starts will compile (slower)" >&2
fi

size=$(du -sm "$OUT" | cut -f1)
echo "staged $OUT: ${size} MB unzipped (Lambda limit: 250 MB)"
