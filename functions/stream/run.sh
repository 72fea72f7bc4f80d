#!/bin/sh
# The stream function's handler. The Lambda Web Adapter layer's wrapper (AWS_LAMBDA_EXEC_WRAPPER=
# /opt/bootstrap) execs "$LAMBDA_TASK_ROOT/$_HANDLER" instead of the Python runtime: this starts the
# API app under uvicorn on 127.0.0.1:$PORT, and the adapter (a Lambda extension in the same layer)
# waits for AWS_LWA_READINESS_CHECK_PATH, then relays each Function URL request to it, streaming
# the response (AWS_LWA_INVOKE_MODE=response_stream). Must stay executable (mode 755).
cd "${LAMBDA_TASK_ROOT:-$(dirname "$0")/../..}" || exit 1
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m functions.stream.server
