"""`make sim-aws`: the deployed shape on this machine, offline, in the foreground.

moto in server mode (127.0.0.1, a free port) holds the AWS services, created from the synthesized
template in cdk.out; the functions run from their staged code asset in Python 3.12 processes; API
Gateway, the Function URL, EventBridge schedules, the stream event source mapping and ECS are
emulated around them (simaws/*.py). Ctrl-C stops everything it started and saves the table and
the bucket under $COGPLANE_HOME/sim/state (restored on the next start).
"""

from __future__ import annotations

import base64
import copy
import inspect
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from simaws.apigw import RestApi
from simaws.deploy import Deployer, Deployment
from simaws.ecs import EcsEmulator, dockerfile_env
from simaws.events import Scheduler, StreamPoller
from simaws.funcurl import FunctionUrl, WebAdapterFunction, free_port
from simaws.iam import Iam, patch_presigned
from simaws.lambdas import LambdaFunction, python312, stage_runtime
from simaws.template import ACCOUNT, REGION, Assembly

log = logging.getLogger("simaws")
REPO = Path(__file__).resolve().parents[1]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
LOOPBACK = "127.0.0.0/8,::1/128,localhost"


# --- moto ------------------------------------------------------------------------------------------
_DYNAMODB_LOCK = threading.RLock()


def patch_moto() -> None:
    """moto 5.2.5 bugs on paths the stack uses (the server runs in this process):
    - RunTask of an awsvpc (Fargate) task reads an ENI attribute moto's ENI lacks -> HTTP 500;
    - moto's DynamoDB has no locking: TransactWriteItems deep-copies the table while another
      request thread writes it ("dictionary changed size during iteration" -> HTTP 500, seen by
      the system suites), and two conditional writes can both win. DynamoDB requests (and stream
      reads) are served one at a time, as DynamoDB's per-item atomicity needs."""
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface

    for handler in (DynamoHandler, DynamoDBStreamsHandler):
        if getattr(handler, "_simaws_locked", False):
            continue
        unlocked = handler.call_action

        def call_action(self, _unlocked=unlocked):
            with _DYNAMODB_LOCK:
                return _unlocked(self)

        handler.call_action = call_action
        handler._simaws_locked = True

    _patch_transactions()

    if not hasattr(NetworkInterface, "private_dns_name"):

        def get(self):
            return self.__dict__.get("_private_dns_name") or (
                f"ip-{str(self.private_ip_address).replace('.', '-')}.ec2.internal"
            )

        def set_(self, value):  # RunInstances sets it (an instance's ENI)
            self.__dict__["_private_dns_name"] = value

        NetworkInterface.private_dns_name = property(get, set_)  # type: ignore[attr-defined]


def _patch_transactions() -> None:
    """moto 5.2.5's TransactWriteItems backs up every table it touches with `copy.deepcopy`
    (items and every stream record since the start) and, when the transaction is cancelled, puts
    the copies in the tables' place. Two harms on the stack's path, where every prediction change
    is a transaction (the prediction and its outbox events):
    - the cost grows with the table and its stream: 44 ms per transaction at 500 items, 220 ms at
      2,000, served one at a time (the lock above), so the simulation slowed as a run went on;
    - after a cancelled transaction (a lost race: a condition that failed) the table holds a copy
      of its stream shard, while the stream pollers' iterators read the old one: no stream record
      reached a function again (webhooks then came only from the one-minute sweep).
    Here a transaction backs up only the items it names (and the stream's length), and a cancelled
    one puts exactly those back in the same table and shard."""
    import moto.dynamodb.models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original = DynamoDBBackend.transact_write_items
    if getattr(original, "_simaws_patched", False):
        return
    source = inspect.getsource(original)
    if "copy.deepcopy(" not in source or "original_table_state" not in source:
        return  # a moto that backs up differently: leave it as it is

    class _KeepTables:
        """`copy` for moto's dynamodb module: a table is 'copied' as itself (so the rollback puts
        the same object back); anything else is copied as before (UpdateItem's item copy)."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)

        copy = staticmethod(copy.copy)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> Any:
        undo: list[tuple[Any, Any, Any, Any]] = []  # (table, hash key, range key, item before or None)
        shards: dict[int, tuple[Any, int]] = {}
        for entry in transact_items if isinstance(transact_items, list) else []:
            try:
                _, op = next(iter(entry.items()))
                table = self.tables[op["TableName"]]
                if "Item" in op and "Key" not in op:
                    keys = {a: op["Item"][a] for a in (table.hash_key_attr, table.range_key_attr) if a}
                else:
                    keys = op["Key"]
                hash_key, range_key = self.get_keys_value(table, keys)
                before = table.get_item(hash_key, range_key)
            except Exception:  # noqa: BLE001, S112 - moto itself answers a malformed entry
                continue
            undo.append((table, hash_key, range_key, copy.deepcopy(before)))
            if table.stream_shard is not None:
                shards.setdefault(id(table), (table.stream_shard, len(table.stream_shard.items)))
        try:
            return original(self, transact_items)
        except BaseException:
            for table, hash_key, range_key, before in reversed(undo):
                if range_key is not None:
                    if before is None:
                        table.items.get(hash_key, {}).pop(range_key, None)
                    else:
                        table.items[hash_key][range_key] = before
                elif before is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = before
            for shard, length in shards.values():
                del shard.items[length:]  # a cancelled transaction leaves no stream record
            raise

    transact_write_items._simaws_patched = True  # type: ignore[attr-defined]
    dynamodb_models.copy = _KeepTables  # type: ignore[assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def start_moto(*, iam: bool = False):
    import logging as _logging

    from moto.server import ThreadedMotoServer

    _logging.getLogger("werkzeug").setLevel(_logging.ERROR)
    patch_moto()
    if iam:
        patch_presigned()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def clients(endpoint: str, credentials: dict[str, str] | None = None) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    creds = credentials or CREDENTIALS
    config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=70)
    session = boto3.session.Session(
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    names = ("dynamodb", "dynamodbstreams", "s3", "sqs", "secretsmanager", "ecs", "ec2", "iam", "sts")
    return {n: session.client(n, endpoint_url=endpoint, config=config) for n in names}


# Settings an operator may set on a deployment's functions; the simulation takes them from its
# own environment (tests use low rate limits to stay quick, and COGPLANE_CLOCK_FILE to move the
# functions' clock: cogplane.clock.OffsetClock).
DEPLOYMENT_SETTINGS = (
    "COGPLANE_RATE_CREATE_PER_MINUTE",
    "COGPLANE_RATE_OTHER_PER_MINUTE",
    "COGPLANE_PRICES",
    "COGPLANE_CLOCK_FILE",
    "COGPLANE_PAGE_SIZE",
    "COGPLANE_START_DEADLINE_SECONDS",
)


def with_max_runners(dispatch: str, max_runners: str | None) -> str:
    """COGPLANE_MAX_RUNNERS (as on `make up`): the runners one pool may have, standing in for the
    stack's `-c cogplane:maxPerPool` context (the dispatcher's max_per_pool in COGPLANE_ECS_DISPATCH)."""
    if not max_runners:
        return dispatch
    return json.dumps({**json.loads(dispatch), "max_per_pool": int(max_runners)})


# --- state kept across restarts ---------------------------------------------------------------------
class State:
    """The table's items and the bucket's objects, saved on stop and restored on start (moto has
    no persistence); the secrets' values. SQS messages and ECS tasks are not kept."""

    def __init__(self, home: Path):
        self.root = home / "sim" / "state"

    def secrets(self) -> dict[str, str]:
        path = self.root / "secrets.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def save_secrets(self, values: dict[str, str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "secrets.json"
        path.write_text(json.dumps(values))
        path.chmod(0o600)

    def save(self, c: dict[str, Any], table: str, bucket: str) -> tuple[int, int]:
        self.root.mkdir(parents=True, exist_ok=True)
        items = []
        for page in c["dynamodb"].get_paginator("scan").paginate(TableName=table):
            items += page.get("Items", [])
        objects = []
        for page in c["s3"].get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                got = c["s3"].get_object(Bucket=bucket, Key=obj["Key"])
                objects.append(
                    {
                        "key": obj["Key"],
                        "content_type": got.get("ContentType"),
                        "body": base64.b64encode(got["Body"].read()).decode(),
                    }
                )
        tmp = self.root / "data.json.tmp"
        tmp.write_text(json.dumps({"items": items, "objects": objects}))
        tmp.replace(self.root / "data.json")
        return len(items), len(objects)

    def restore(self, c: dict[str, Any], table: str, bucket: str) -> tuple[int, int]:
        path = self.root / "data.json"
        if not path.is_file():
            return 0, 0
        data = json.loads(path.read_text())
        items = data.get("items", [])
        for start in range(0, len(items), 25):
            c["dynamodb"].batch_write_item(
                RequestItems={table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
            )
        for obj in data.get("objects", []):
            kwargs = {"Bucket": bucket, "Key": obj["key"], "Body": base64.b64decode(obj["body"])}
            if obj.get("content_type"):
                kwargs["ContentType"] = obj["content_type"]
            c["s3"].put_object(**kwargs)
        return len(items), len(data.get("objects", []))


# --- the simulation ----------------------------------------------------------------------------------
class Simulation:
    def __init__(
        self,
        *,
        home: Path,
        port: int,
        token: str | None,
        cdk_out: Path,
        env_cache: Path | None = None,
        capacity: int | None = None,
        expirer_first_s: float | None = None,
        user: str | None = None,
        iam: bool = False,
        sku_capacity: dict[str, int] | None = None,
    ):
        self.home = home.resolve()
        self.iam = iam
        self.user = user
        self.port = port
        self.cdk_out = cdk_out
        self.token = token
        self.env_cache = env_cache
        self.capacity = capacity
        self.sku_capacity = dict(sku_capacity or {})
        self.expirer_first_s = expirer_first_s
        self.sim = self.home / "sim"
        self.servers: list[tuple[uvicorn.Server, threading.Thread]] = []
        self.functions: dict[str, LambdaFunction] = {}
        self.pollers: list[StreamPoller] = []
        self.scheduler: Scheduler | None = None
        self.ecs: EcsEmulator | None = None
        self.moto = None
        self.state: State | None = None
        self.web_adapter: WebAdapterFunction | None = None

    def url_map(self, deployment: Deployment, stream_port: int) -> dict[str, str]:
        """Deployed host names -> where they are served here (the simulation's DNS)."""
        mapping = {}
        if deployment.rest_api:
            mapping[deployment.rest_api["url"]] = f"http://127.0.0.1:{self.port}"
        for info in deployment.function_urls.values():
            mapping[info["url"].rstrip("/")] = f"http://127.0.0.1:{stream_port}"
        return mapping

    def start(self) -> str:
        self.sim.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        assembly = Assembly.load(self.cdk_out)
        python = python312()
        runtime_dir = stage_runtime(self.sim / "runtime")
        self.moto, endpoint = start_moto(iam=self.iam)
        import httpx

        # tasks stay where the ECS emulator puts them (moto would advance them on each describe)
        httpx.post(
            f"{endpoint}/moto-api/state-manager/set-transition",
            json={"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}},
        )
        iam = Iam(clients(endpoint), self.home) if self.iam else None
        c = clients(endpoint, iam.admin() if iam else None)  # the simulation's own administrator
        state = State(self.home)
        secret_values = state.secrets()
        admin = next((lid for lid in assembly.of_type("AWS::SecretsManager::Secret") if "AdminToken" in lid), None)
        if admin and self.token:
            secret_values[admin] = self.token
        deployer = Deployer(assembly, c, secret_values=secret_values)
        deployment = deployer.deploy()
        state.save_secrets(deployer.secret_values)
        if admin:
            self.token = deployer.secret_values[admin]
        self.table = deployment.outputs.get("TableName") or next(
            iter(deployment.resolver.get(t).ref for t in assembly.of_type("AWS::DynamoDB::Table"))
        )
        self.bucket = deployment.outputs.get("BucketName") or next(
            iter(deployment.resolver.get(b).ref for b in assembly.of_type("AWS::S3::Bucket"))
        )
        self.clients, self.state = c, state
        restored = state.restore(c, self.table, self.bucket)
        if any(restored):
            log.info("restored %d items and %d objects from %s", *restored, state.root)

        stream_port = free_port()
        self.function_url = f"http://127.0.0.1:{stream_port}"
        mapping = self.url_map(deployment, stream_port)
        base_env = {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            # everything here is on 127.0.0.1, which a deployment would refuse to fetch from
            "COGPLANE_ALLOW_NETWORKS": os.environ.get("COGPLANE_ALLOW_NETWORKS", LOOPBACK),
        }
        for key in DEPLOYMENT_SETTINGS:  # what an operator may tune on the deployed functions
            if key in os.environ:
                base_env[key] = os.environ[key]
        for fn in deployment.functions.values():
            for key, value in fn.environment.items():
                for deployed, local in mapping.items():
                    value = value.replace(deployed, local)
                if key == "COGPLANE_ECS_DISPATCH":
                    value = with_max_runners(value, os.environ.get("COGPLANE_MAX_RUNNERS"))
                fn.environment[key] = value
            self.functions[fn.logical_id] = LambdaFunction(
                fn, python=python, runtime_dir=runtime_dir, log_dir=self.home / "logs", base_env=base_env
            )
        self.deployment = deployment
        role_env: dict[str, dict[str, str]] = {}
        if iam:  # each function acts with its role's credentials (its policies from the template)
            role_arns = iam.roles(assembly, deployment.resolver)
            functions = assembly.of_type("AWS::Lambda::Function")
            for fn in self.functions.values():
                role = deployment.resolver.resolve(functions[fn.config.logical_id]["Properties"]["Role"])
                fn.config.environment.update(iam.credentials(role, fn.config.name))
            for arn in role_arns.values():
                if ":role/" in arn:
                    role_env[arn] = iam.credentials(arn, "ecs-task")
        if self.user:  # the admin account's name (the expirer registers the token for it)
            for fn in self.functions.values():
                if "COGPLANE_ADMIN_TOKEN_SECRET_ARN" in fn.config.environment:
                    fn.config.environment["COGPLANE_ADMIN_USERNAME"] = self.user

        # the API: API Gateway -> the API function
        api = deployment.rest_api
        rest = RestApi(
            self.functions[api["function"]],
            stage=api["stage"],
            binary_media_types=api["binary_media_types"],
            api_id=api["id"],
            account=ACCOUNT,
        )
        self.rest_api = rest
        self._serve(rest, self.port, "api")
        # the stream function behind its Function URL
        for info in deployment.function_urls.values():
            bin_dir = self.sim / "bin"
            bin_dir.mkdir(exist_ok=True)
            link = bin_dir / "python3"
            if not link.exists():
                link.symlink_to(python)
            self.web_adapter = WebAdapterFunction(self.functions[info["function"]], bin_dir)
            self._serve(FunctionUrl(self.web_adapter), stream_port, "function-url")
        # ECS
        image_env = dockerfile_env(REPO / "gpu_runner" / "Dockerfile")
        image_env.pop("PATH", None)
        runner_env = {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "COGPLANE_ALLOW_NETWORKS": base_env["COGPLANE_ALLOW_NETWORKS"],
        }
        for key in ("UV_CACHE_DIR", "PIP_CACHE_DIR", "XDG_CACHE_HOME", "TMPDIR", "COGPLANE_IDLE_TIMEOUT"):
            if key in os.environ:
                runner_env[key] = os.environ[key]
        self.ecs = EcsEmulator(
            cluster=deployment.cluster_arn,
            region=REGION,
            account=ACCOUNT,
            home=self.sim / "ecs",
            python=str(REPO / ".venv" / "bin" / "python"),
            cwd=REPO,
            base_env=runner_env,
            image_env=image_env,
            capacity=self.capacity,
            role_env=role_env,
            sku_capacity=self.sku_capacity,
            env_cache=self.env_cache,
        )
        self.ecs.provide_instance(c["ec2"], c["ecs"])  # stands in for the GPU SKUs' Auto Scaling groups
        self.ecs.start()
        if "COGPLANE_IDLE_TIMEOUT" in os.environ:  # the runner honours it over the task definition's
            self.ecs.image_env["COGPLANE_IDLE_TIMEOUT"] = os.environ["COGPLANE_IDLE_TIMEOUT"]
        if iam:
            Iam.enforce(endpoint)
            log.info("IAM enforced: each function and task acts with its role's credentials")
        # the stream -> webhooks mapping, then the schedules (the expirer's first run registers the token)
        for mapping_ in deployment.stream_mappings:
            self.pollers.append(
                StreamPoller(
                    mapping_, self.functions[mapping_.function], c["dynamodbstreams"], region=REGION, account=ACCOUNT
                ).start()
            )
        self.scheduler = Scheduler(
            deployment.schedules, self.functions, region=REGION, account=ACCOUNT, stack_name=assembly.stack_name
        )
        for schedule in deployment.schedules:  # a first run now (EventBridge: within the first minute)
            if any("Expirer" in t for t in schedule.targets):
                self.scheduler.fire(schedule)
        self.scheduler.start(first_after_s=self.expirer_first_s)
        url = f"http://127.0.0.1:{self.port}/{api['stage']}"
        (self.home / "url").write_text(url + "\n")
        token_path = self.home / "token"
        token_path.write_text((self.token or "") + "\n")
        token_path.chmod(0o600)
        self.url = url
        self.endpoint = endpoint
        return url

    def _serve(self, app, port: int, name: str) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=3,
            http="h11",
            lifespan="off",
            # Longer than any client's idle expiry (httpx's: 5 s, uvicorn's default here too: a
            # request sent on a connection at that instant met the close, "Connection reset by
            # peer", seen once by replicate's polls); AWS's front doors keep idle connections longer.
            timeout_keep_alive=75,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"simaws-{name}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} server did not start on 127.0.0.1:{port}")
            time.sleep(0.02)
        self.servers.append((server, thread))

    def stop(self) -> None:
        for server, _ in self.servers:
            server.should_exit = True
        if self.scheduler:
            self.scheduler.stop()
        for poller in self.pollers:
            poller.stop()
        if self.ecs:
            print("Stopping runners ...", flush=True)
            self.ecs.stop()
        if self.web_adapter:
            self.web_adapter.stop()
        for fn in self.functions.values():
            fn.close()
        for _, thread in self.servers:
            thread.join(5)
        if self.moto is not None and getattr(self, "state", None) is not None:
            try:
                saved = self.state.save(self.clients, self.table, self.bucket)
                print(f"Saved {saved[0]} items and {saved[1]} objects to {self.state.root}", flush=True)
            except Exception:
                log.exception("could not save the simulation's state")
        if self.moto is not None:
            self.moto.stop()


def banner(url: str, token: str, home: Path, sim: Simulation) -> str:
    api = sim.functions[sim.deployment.rest_api["function"]]
    inits = ", ".join(f"{t:.0f} ms" for t in api.init_times) or "not started yet"
    user = sim.user or "admin"
    iam = "   (IAM enforced; SIMAWS_IAM=0 turns it off)" if sim.iam else "   (IAM not enforced: SIMAWS_IAM=0)"
    return f"""
cogplane is up at {url}   (the deployed shape, simulated: `make sim-aws`)

  user:   {user}
  token:  {token}   (also in {home}/token; the URL in {home}/url)

  AWS (moto server):  {sim.endpoint}   table {sim.table}, bucket {sim.bucket}{iam}
  Function URL:       {sim.function_url}   (the stream function: urls.stream and file links)
  Lambda:             {len(sim.functions)} functions from {sim.cdk_out}, Python 3.12 (API function init: {inits})
  Logs:               {home}/logs/ (lambda-*.log), {home}/sim/ecs/ (task-*.log)

  Push a model, then run it:
    COGPLANE_URL={url} COGPLANE_TOKEN={token} \\
      .venv/bin/cogplane push examples/hello {user}/hello
    REPLICATE_BASE_URL={url} REPLICATE_API_TOKEN={token} \\
      python -c 'import replicate; print(replicate.run("{user}/hello", input={{"prompt": "world"}}))'

Press Ctrl-C to stop.
"""


def parse_capacity(text: str | None) -> dict[str, Any]:
    """SIMAWS_CAPACITY: `N` (tasks running at once), or `SKU=N,...` per hardware (e.g. `gpu-a10g=0`:
    that SKU gets no instance, as on an account without its vCPU quota), or both (`4,gpu-a10g=0`)."""
    total, per_sku = None, {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        sku, sep, value = part.rpartition("=")
        if sep:
            per_sku[sku.strip()] = int(value)
        else:
            total = int(value)
    return {"capacity": total, "sku_capacity": per_sku}


def run() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    home = Path(os.environ.get("COGPLANE_HOME", ".cogplane-sim"))
    port = int(os.environ.get("PORT", "8000"))
    token = os.environ.get("COGPLANE_TOKEN") or None
    if token is None and (home / "token").is_file():
        token = (home / "token").read_text().strip() or None
    if token is None:
        token = "r8_" + secrets.token_hex(20)
    cdk_out = Path(os.environ.get("SIMAWS_CDK_OUT", str(REPO / "cdk.out")))
    env_cache = os.environ.get("SIMAWS_ENV_CACHE")
    capacity = os.environ.get("SIMAWS_CAPACITY")
    # each function and task acts with its role's policies unless SIMAWS_IAM=0 (README, "IAM")
    iam = os.environ.get("SIMAWS_IAM", "1").strip().lower() not in ("0", "false", "no", "off")
    sim = Simulation(
        home=home,
        port=port,
        token=token,
        cdk_out=cdk_out,
        env_cache=Path(env_cache).resolve() if env_cache else None,
        **parse_capacity(capacity),
        user=os.environ.get("COGPLANE_USER") or None,
        iam=iam,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        url = sim.start()
        print(banner(url, sim.token or "", home.resolve(), sim), flush=True)
        while not stop.wait(1):
            pass
    except Exception as exc:
        log.exception("the simulation could not start: %s", exc)
        sim.stop()
        return 1
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(run())
