// The JS half of the compatibility suite (tests/system/test_client_compat.py runs it) with
// COGPLANE_URL, COGPLANE_TOKEN, NODE_EXTRA_CA_CERTS (the stack's CA) and COMPAT_VERSIONS set.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import Replicate from "replicate";

const baseUrl = `${process.env.COGPLANE_URL}/v1`; // quirk: JS's baseUrl includes /v1
const versions = JSON.parse(process.env.COMPAT_VERSIONS);
// the simulated deployment: the API under its API Gateway stage, streams and file links on the
// stream function's URL, the deployed hardware list
const prefix = new URL(process.env.COGPLANE_URL).pathname.replace(/\/$/, "");
const streamBase = process.env.COGPLANE_STREAM_BASE || process.env.COGPLANE_URL;
const hardware = JSON.parse(process.env.COGPLANE_HARDWARE || '["cpu"]');
const https = process.env.COGPLANE_URL.startsWith("https:");
const seen = [];
const countingFetch = (url, init = {}) => {
  const path = new URL(url).pathname;
  seen.push([init.method || "GET", prefix && path.startsWith(`${prefix}/`) ? path.slice(prefix.length) : path, { ...(init.headers || {}) }]);
  return fetch(url, init);
};
const replicate = new Replicate({ auth: process.env.COGPLANE_TOKEN, baseUrl, fetch: countingFetch });
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

test("create shapes: version and model routes", async () => {
  const byVersion = await replicate.predictions.create({ version: versions.sleeper, input: { seconds: 0 } });
  const byModel = await replicate.predictions.create({ model: "local/compat-sleeper", input: { seconds: 0 } });
  for (const p of [byVersion, byModel]) {
    assert.equal(p.model, "local/compat-sleeper");
    assert.equal(p.version, versions.sleeper);
    assert.equal(p.status, "starting");
    assert.equal(p.urls.get, `${baseUrl}/predictions/${p.id}`);
  }
});

test("sync contract: done inside the wait -> no poll; wait ran out -> polls", async () => {
  seen.length = 0;
  assert.equal(await replicate.run("examples/hello", { input: { prompt: "js" } }), "hello js");
  assert.equal(seen.filter(([m, p]) => m === "GET" && p.startsWith("/v1/predictions/")).length, 0);
  seen.length = 0;
  const out = await replicate.run("local/compat-sleeper", { input: { seconds: 1.5, tag: "j" }, wait: { mode: "block", timeout: 1 } });
  assert.equal(out, "slept 1.5 j");
  assert.ok(seen.filter(([m, p]) => m === "GET" && p.startsWith("/v1/predictions/")).length >= 1);
  assert.ok(seen.some(([m, , h]) => m === "POST" && h.Prefer === "wait=1"));
});

test("lifecycle: failure throws, cancel is stable", async () => {
  await assert.rejects(
    () => replicate.run("local/compat-raises", { input: { message: "js failure" } }),
    (err) => /Prediction failed: .*js failure/.test(err.message),
  );
  const p = await replicate.predictions.create({ model: "local/compat-sleeper", input: { seconds: 60 } });
  const canceled = await replicate.predictions.cancel(p.id);
  assert.equal(canceled.status, "canceled");
  assert.equal((await replicate.predictions.get(p.id)).status, "canceled");
});

test("paginate walks more than one page (absolute next URLs)", async () => {
  for (let i = 0; i < 6; i++) {
    await replicate.predictions.create({ version: versions.sleeper, input: { seconds: 0 } });
  }
  let pages = 0;
  const ids = [];
  for await (const page of replicate.paginate(replicate.predictions.list)) {
    pages += 1;
    ids.push(...page.map((p) => p.id));
  }
  assert.ok(pages >= 2, `pages: ${pages}`);
  assert.equal(new Set(ids).size, ids.length);
});

test("stream: text pieces in order, no Authorization sent", async () => {
  seen.length = 0;
  const pieces = [];
  let done = null;
  for await (const event of replicate.stream("local/compat-tokens", { input: { text: "one two three", delay: 0.2 } })) {
    if (event.event === "output") pieces.push(event.toString());
    if (event.event === "done") done = event;
  }
  assert.deepEqual(pieces, ["one ", "two ", "three"]);
  assert.equal(done.data, "{}");
  const streamCall = seen.find(([, p]) => p.includes("/v1/streams/"));
  assert.ok(streamCall, "the stream URL was fetched through the client's fetch");
  assert.equal(streamCall[2].Authorization, undefined);
});

test("stream: file models stream under /v1/files/ and yield FileOutput", async () => {
  const files = [];
  for await (const event of replicate.stream("local/compat-frames", { input: { count: 2 } })) {
    if (event.event === "output") files.push(event.data);
  }
  assert.equal(files.length, 2);
  for (const [i, file] of files.entries()) {
    if (!https) {  // JS 1.4.0 wraps https: URLs only (the simulation is plain HTTP)
      assert.equal(Buffer.from(await (await fetch(file)).arrayBuffer()).toString(), `frame ${i}\n`);
      continue;
    }
    assert.equal(typeof file.url, "function", "a FileOutput");
    assert.equal(Buffer.from(await (await file.blob()).arrayBuffer()).toString(), `frame ${i}\n`);
  }
});

test("stream: an error event rejects", async () => {
  await assert.rejects(async () => {
    for await (const _ of replicate.stream("local/compat-tokens", { input: { text: "a b", fail: "js stream failure" } })) {
      // drain
    }
  }, /js stream failure/);
});

test("file outputs are FileOutput objects read without auth", async () => {
  const out = await replicate.run("local/compat-frames", { input: { count: 2 } });
  assert.equal(out.length, 2);
  if (https) {  // JS 1.4.0 wraps https: URLs only (the simulation is plain HTTP)
    assert.ok(out[0].url().href.startsWith(`${streamBase}/v1/blobs/`));
    assert.equal(Buffer.from(await (await out[1].blob()).arrayBuffer()).toString(), "frame 1\n");
  } else {
    assert.ok(out[0].startsWith(`${streamBase}/v1/blobs/`));
    assert.equal(Buffer.from(await (await fetch(out[1])).arrayBuffer()).toString(), "frame 1\n");
  }
  const plainClient = new Replicate({ auth: process.env.COGPLANE_TOKEN, baseUrl, useFileOutput: false });
  const plain = await plainClient.run("local/compat-frames", { input: { count: 1 } });
  assert.equal(typeof plain[0], "string");
});

test("files API: metadata as a JSON blob part, file as an input, delete", async () => {
  const data = Buffer.from("js file bytes\n".repeat(20));
  const file = await replicate.files.create(new Blob([data]), { purpose: "js" });
  assert.deepEqual(file.metadata, { purpose: "js" });
  assert.equal(file.size, data.length);
  assert.equal((await replicate.files.get(file.id)).id, file.id);
  const out = await replicate.run("local/compat-filecat", { input: { file: file.urls.get } });
  assert.equal(out.sha256, sha256(data));
  const auto = await replicate.run("local/compat-filecat", { input: { file: Buffer.from("auto js") } });
  assert.equal(auto.sha256, sha256(Buffer.from("auto js")));
  await replicate.files.delete(file.id); // JS sends Content-Type: application/json on DELETE too
  await assert.rejects(() => replicate.files.get(file.id), (err) => err.response?.status === 404);
});

test("errors and auth raise ApiError cleanly", async () => {
  const bad = new Replicate({ auth: "r8_not-a-real-token-000000000", baseUrl });
  await assert.rejects(() => bad.predictions.list(), (err) => err.response?.status === 401 && /Unauthenticated/.test(err.message));
  await assert.rejects(
    () => replicate.predictions.create({ version: "d".repeat(64), input: {} }),
    (err) => err.response?.status === 422 && /Invalid version/.test(err.message),
  );
});

test("models.search sends a JSON-quoted body; collections, account, hardware", async () => {
  const found = await replicate.models.search("compat-tokens");
  assert.deepEqual(found.results.map((m) => m.name), ["compat-tokens"]);
  const collections = await replicate.collections.list();
  assert.ok(collections.results.some((c) => c.slug === "examples"));
  const examples = await replicate.collections.get("examples");
  assert.ok(examples.models.length >= 1);
  assert.equal((await replicate.accounts.current()).username, "local");
  assert.deepEqual((await replicate.hardware.list()).map((h) => h.sku), hardware);
  const version = await replicate.models.versions.get("local", "compat-tokens", versions.tokens);
  assert.equal(version.openapi_schema.components.schemas.Output["x-cog-array-type"], "iterator");
});
