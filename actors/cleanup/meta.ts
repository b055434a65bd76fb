/**
 * cleanup's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start cleanup without loading cleanup's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'cleanup',
  kind: 'pool',
  concurrency: 256,
  // One thread kept warm: smtpd waits for cleanup's reply before it answers the end of DATA,
  // and a thread start (100–300 ms with cleanup's modules, more on a loaded machine) is longer
  // than the whole SMTP dialogue, so the first burst after a quiet spell queued behind it: at
  // 500 msg/s offered the first 100–120 messages waited 215–364 ms for it, which alone made the
  // p99 of end of DATA → 250 (bench/relay --rate 500). smtpd's warm request
  // (actors/master/services.ts) still starts one should the pool have none (after a crash).
  minThreads: 1,
};

export default meta;
