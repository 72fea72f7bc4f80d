// Run by tests/system/test_teams_e2e.py with COGPLANE_URL, COGPLANE_TOKEN (a member's token) and
// MODEL set, on a stack whose create limit is low: the JS client's own retry on 429 gets the run through.
import { test } from "node:test";
import assert from "node:assert/strict";
import Replicate from "replicate";

const statuses = [];
const replicate = new Replicate({
  auth: process.env.COGPLANE_TOKEN,
  baseUrl: `${process.env.COGPLANE_URL}/v1`,
  fetch: async (url, init) => {
    const response = await fetch(url, init);
    statuses.push([init?.method || "GET", response.status, response.headers.get("retry-after")]);
    return response;
  },
});

test("run succeeds after the client retries a throttled create", async () => {
  // spend the account's create bucket (each create counts, even one the API refuses)
  let throttled = false;
  for (let i = 0; i < 50 && !throttled; i++) {
    const r = await fetch(`${process.env.COGPLANE_URL}/v1/predictions`, {
      method: "POST",
      headers: { Authorization: `Bearer ${process.env.COGPLANE_TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ version: "not-a-version", input: {} }),
    });
    throttled = r.status === 429;
  }
  assert.ok(throttled, "the create bucket never ran out");
  const output = await replicate.run(process.env.MODEL, { input: { count: 1 } });
  assert.equal(output.length, 1);
  const posts = statuses.filter(([method]) => method === "POST");
  assert.equal(posts[0][1], 429, JSON.stringify(statuses));
  assert.ok(Number(posts[0][2]) >= 1, JSON.stringify(statuses));
  assert.equal(posts.at(-1)[1], 201, JSON.stringify(statuses));
});
