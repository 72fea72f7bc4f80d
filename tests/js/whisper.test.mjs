// Run by tests/system/test_client_compat.py (slow): examples/whisper streamed through the JS client.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import Replicate from "replicate";

const replicate = new Replicate({ auth: process.env.COGPLANE_TOKEN, baseUrl: `${process.env.COGPLANE_URL}/v1` });

test("whisper segments arrive through replicate.stream", async () => {
  const audio = readFileSync(process.env.WHISPER_AUDIO); // a Buffer: uploaded through the files API
  const pieces = [];
  for await (const event of replicate.stream("examples/whisper", { input: { audio } })) {
    if (event.event === "output") pieces.push(event.toString());
  }
  assert.equal(pieces.join("").trim(), "Hello from a self-hosted model server.");
});
