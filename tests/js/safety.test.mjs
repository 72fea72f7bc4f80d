// Run by tests/system/test_safety_e2e.py with COGPLANE_URL, COGPLANE_TOKEN and PAINTER_VERSION set:
// the model's safety checker is `all`. The JS client passes `disable_safety_checker` through (it
// sends every create option it does not know) and keeps the `safety` extension field as it is.
import { test } from "node:test";
import assert from "node:assert/strict";
import Replicate from "replicate";

const replicate = new Replicate({
  auth: process.env.COGPLANE_TOKEN,
  baseUrl: `${process.env.COGPLANE_URL}/v1`,
});
const version = process.env.PAINTER_VERSION;

test("an API prediction is checked: the flagged output is replaced", async () => {
  const created = await replicate.predictions.create({ version, input: { text: "js checked" } });
  const done = await replicate.wait(created);
  assert.equal(done.status, "succeeded");
  assert.deepEqual(done.safety, { checked: true, flagged: [1] }); // [plain, blobs]: the second
  assert.ok(done.metrics.safety_time > 0);
  assert.match(done.logs, /Safety checker: output 1 \(output_1\.png\) was flagged/);
});

test("disable_safety_checker: true skips the check", async () => {
  const created = await replicate.predictions.create({ version, input: { text: "js unchecked" }, disable_safety_checker: true });
  const done = await replicate.wait(created);
  assert.equal(done.status, "succeeded");
  assert.equal(done.safety, undefined);
  assert.equal(done.output.length, 2);
});
