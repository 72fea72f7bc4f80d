// Run by tests/system/test_teams_e2e.py with COGPLANE_URL, COGPLANE_TOKEN (a member's token) and
// MODEL set, on a stack whose create limit is low (5 a minute).
//
// replicate 1.4.0 retries a throttled create by itself, but its backoff never sleeps: the delay it
// computes has random jitter, so `Number.isInteger(delay)` is false and the retries go out at once
// (lib/util.js withAutomaticRetries); it does not wait for Retry-After either. Its retries succeed
// when a token frees up within those milliseconds; here (one token every 12 s) they cannot, so the
// test checks that the client did retry, that the API's 429 said when to come back, and that the
// run succeeds once the caller waits that long.
import { test } from "node:test";
import assert from "node:assert/strict";
import Replicate from "replicate";

const seen = [];
const replicate = new Replicate({
  auth: process.env.COGPLANE_TOKEN,
  baseUrl: `${process.env.COGPLANE_URL}/v1`,
  fetch: async (url, init) => {
    const response = await fetch(url, init);
    seen.push({ method: init?.method || "GET", status: response.status, retryAfter: response.headers.get("retry-after"),
                remaining: response.headers.get("x-ratelimit-remaining"), at: Date.now() });
    return response;
  },
});

test("a throttled create is retried by the client; the run succeeds after Retry-After", async () => {
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
  await assert.rejects(() => replicate.run(process.env.MODEL, { input: { count: 1 } }),
                       (err) => err.response?.status === 429);
  const posts = seen.filter((s) => s.method === "POST");
  assert.ok(posts.length >= 2, `the client did not retry: ${JSON.stringify(posts)}`);
  assert.ok(posts.every((p) => p.status === 429 && Number(p.retryAfter) >= 1 && p.remaining === "0"));
  console.log(`# ${posts.length} POST attempts within ${posts.at(-1).at - posts[0].at} ms`);
  const wait = Number(posts.at(-1).retryAfter);
  await new Promise((resolve) => setTimeout(resolve, wait * 1000 + 250));
  const output = await replicate.run(process.env.MODEL, { input: { count: 1 } });
  assert.equal(output.length, 1);
  assert.equal(seen.filter((s) => s.method === "POST").at(-1).status, 201);
});
