"""One Lambda execution environment (run by simaws.lambdas under Python 3.12, stdlib only).

Started as `python3.12 -S -s bootstrap.py TASK_ROOT RUNTIME_DIR HANDLER IN_FD OUT_FD`: sys.path is
the function's code (LAMBDA_TASK_ROOT) and the runtime's own packages (boto3, as the managed
runtime ships it), nothing else. Invocations arrive as JSON lines on IN_FD and results leave as
JSON lines on OUT_FD; stdout/stderr are the function's log. Like the managed runtime, the handler
module is imported once (the init phase, timed) and the environment then serves one event at a
time.
"""

import importlib
import json
import os
import sys
import time
import traceback


class Context:
    def __init__(self, request_id, deadline_ms):
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.invoked_function_arn = os.environ.get("SIMAWS_FUNCTION_ARN", "")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


def main():
    task_root, runtime_dir, handler_name, in_fd, out_fd = sys.argv[1:6]
    sys.path[:0] = [task_root, runtime_dir]
    os.chdir(task_root)
    inbox = os.fdopen(int(in_fd), "r", encoding="utf-8")
    outbox = os.fdopen(int(out_fd), "w", encoding="utf-8")

    def send(message):
        outbox.write(json.dumps(message, separators=(",", ":")) + "\n")
        outbox.flush()

    module_name, _, function_name = handler_name.rpartition(".")
    started = time.perf_counter()
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:  # Runtime.ImportModuleError: every invoke fails
        traceback.print_exc()
        send(
            {
                "init_error": {
                    "errorType": "Runtime.ImportModuleError",
                    "errorMessage": f"Unable to import module '{module_name}': {exc}",
                }
            }
        )
        return 1
    send({"ready": True, "init_ms": round((time.perf_counter() - started) * 1000, 1)})
    for line in inbox:
        request = json.loads(line)
        context = Context(request["request_id"], request["deadline_ms"])
        print(f"START RequestId: {context.aws_request_id} Version: $LATEST", flush=True)
        t0 = time.perf_counter()
        try:
            result = handler(request["event"], context)
            payload = json.dumps(result, separators=(",", ":"))
            send({"ok": True, "payload": payload})
        except Exception as exc:
            traceback.print_exc()
            send(
                {
                    "ok": False,
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_tb(exc.__traceback__),
                }
            )
        sys.stdout.flush()
        sys.stderr.flush()
        print(
            f"END RequestId: {context.aws_request_id} Duration: {(time.perf_counter() - t0) * 1000:.2f} ms", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
