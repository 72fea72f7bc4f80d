// Validates one recorded delivery with the JS client's validateWebhook (used by tests/services).
import { validateWebhook } from "replicate";

const input = JSON.parse(process.env.WEBHOOK);
const ok = await validateWebhook({
  id: input.id,
  timestamp: input.timestamp,
  signature: input.signature,
  body: input.body,
  secret: input.secret,
});
process.exit(ok ? 0 : 3);
