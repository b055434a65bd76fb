/**
 * bench/crash/backlog.ts — the restart after a crash, as qmgr sees it: N messages already in the
 * incoming queue when the server starts (written straight into a fresh store), delivered to a
 * counting sink on loopback. Prints the time from the spawn to the last delivery. Run it under
 * strace to count the synced commits the drain costs (each LMDB commit is one fdatasync):
 *
 *   node_modules/.bin/tsc -p tsconfig.json
 *   strace -f --seccomp-bpf -c -e trace=fdatasync \
 *     node_modules/.bin/node dist/bench/crash/backlog.js [--messages 2000] [--entry dist/bin/postactor.js]
 *
 * (the fill itself is a handful of commits: its writes go out in one event turn).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { newQueueId } from '../../src/queue/qid.js';
import { QueueStore, type MessageMeta } from '../../src/queue/store.js';
import { SmtpSink } from '../../src/smtp/sink.js';
import { startPostactor } from '../relay/postactor.js';

const { values: opt } = parseArgs({ options: { messages: { type: 'string', default: '2000' }, entry: { type: 'string' } } });
const n = Number(opt.messages);
if (!Number.isInteger(n) || n < 1) {
  process.stderr.write(`backlog: --messages must be a positive integer (got "${opt.messages}")\nusage: node dist/bench/crash/backlog.js [--messages N] [--entry FILE]\n`);
  process.exit(2);
}
const sink = new SmtpSink({ pipelining: true });
const sinkPort = await sink.listen(0);
const body = Buffer.from(`Subject: backlog\r\n\r\n${'x'.repeat(1000)}\r\n`, 'latin1');
let spawned = 0;
const mta = await startPostactor({
  sinkPort, smtpdThreads: 1, cleanupThreads: 0, smtpThreads: 2, entry: opt.entry,
  prepare: async (dir) => {
    const spool = path.join(dir, 'spool');
    mkdirSync(spool, { recursive: true });
    const store = QueueStore.open(spool);
    const writes: Promise<void>[] = [];
    for (let k = 0; k < n; k++) {
      const meta: MessageMeta = {
        queueId: newQueueId(), queue: 'incoming', arrival: Date.now(), sender: 'backlog@example.com',
        recipients: [{ address: `u${k}@example.net`, done: false }], size: body.length, nextAttempt: 0, attempts: 0,
      };
      writes.push(store.enqueue(meta, body));
    }
    await Promise.all(writes);
    await store.close();
    spawned = Date.now();
  },
});
const bound = Date.now() + 300_000;
while (sink.stats.messages < n && Date.now() < bound) await new Promise((r) => setTimeout(r, 100));
console.log(`backlog: ${sink.stats.messages} of ${n} delivered, ${((Date.now() - spawned) / 1000).toFixed(1)} s from the spawn`);
await mta.stop();
await sink.close();
process.exit(sink.stats.messages === n ? 0 : 1);
