// Run by tests/system/test_trainings_e2e.py with COGPLANE_URL, COGPLANE_TOKEN,
// COGPLANE_BASE_MODEL / COGPLANE_BASE_VERSION (examples/hello-train as pushed) and COGPLANE_DESTINATION set.
import { test } from "node:test";
import assert from "node:assert/strict";
import Replicate from "replicate";

const replicate = new Replicate({
  auth: process.env.COGPLANE_TOKEN,
  baseUrl: `${process.env.COGPLANE_URL}/v1`,
});

test("create a training, poll it, run the trained version", async () => {
  const destination = process.env.COGPLANE_DESTINATION;
  const [owner, name] = process.env.COGPLANE_BASE_MODEL.split("/");
  let training = await replicate.trainings.create(owner, name, process.env.COGPLANE_BASE_VERSION, {
    destination,
    input: { prefix: "hola" },
  });
  assert.equal(training.status, "starting");
  assert.equal(training.destination, destination);
  const deadline = Date.now() + 300_000;
  while (!["succeeded", "failed", "canceled"].includes(training.status) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    training = await replicate.trainings.get(training.id);
  }
  assert.equal(training.status, "succeeded", training.error);
  assert.ok(training.output.version.startsWith(`${destination}:`));
  // replicate.wait() polls /v1/predictions/{id}: a training answers there too
  const waited = await replicate.wait(training);
  assert.equal(waited.status, "succeeded");
  const page = await replicate.trainings.list();
  assert.ok(page.results.some((t) => t.id === training.id));
  const output = await replicate.run(training.output.version, { input: { text: "mundo" } });
  assert.equal(output, "hola mundo");
});
