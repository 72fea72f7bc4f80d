// Run by tests/system/test_js_client.py with COGPLANE_URL and COGPLANE_TOKEN set.
import { test } from "node:test";
import assert from "node:assert/strict";
import Replicate from "replicate";

// examples/hello on `make up`; the simulated deployment (make sim-aws) pushes it as admin/hello
const HELLO = process.env.COGPLANE_HELLO_MODEL ?? "examples/hello";

const replicate = new Replicate({
  auth: process.env.COGPLANE_TOKEN,
  baseUrl: `${process.env.COGPLANE_URL}/v1`,
});

test("run examples/hello (Prefer: wait)", async () => {
  const output = await replicate.run(HELLO, { input: { prompt: "from js" } });
  assert.equal(output, "hello from js");
});

test("run examples/hello in poll mode", async () => {
  const output = await replicate.run(HELLO, { input: { prompt: "polled" }, wait: { mode: "poll" } });
  assert.equal(output, "hello polled");
});

test("create, wait and list predictions", async () => {
  const prediction = await replicate.predictions.create({ model: HELLO, input: { prompt: "x" } });
  const done = await replicate.wait(prediction);
  assert.equal(done.status, "succeeded");
  assert.equal(done.output, "hello x");
  const page = await replicate.predictions.list();
  assert.ok(page.results.some((p) => p.id === prediction.id));
});

test("a bad token is an ApiError with status 401", async () => {
  const bad = new Replicate({ auth: "r8_not-a-real-token-000000000", baseUrl: `${process.env.COGPLANE_URL}/v1` });
  await assert.rejects(() => bad.predictions.list(), (err) => err.response?.status === 401);
});
