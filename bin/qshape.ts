/**
 * qshape — Postfix's qshape(1): the queue's domain and age distribution.
 *   qshape [-s] [-p] [-l] [-m min_subdomains] [-b bucket_count] [-t bucket_time]
 *          [-w terminal_width] [-N batch_msg_count] [-n batch_top_domains]
 *          [-c config_dir] [--json] [queue_name ...]
 * It reads the queue store directly and read-only (server up or down). Default queues:
 * incoming and active. See src/queue/qshape.ts for the table's rules.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { queueDirectory } from '../src/config/index.js';
import { commandConfig, fatal, parseCommandLine, usageError } from '../src/queue/admin.js';
import { formatQshape, formatQshapeJson, qshapeTable, type QshapeOptions } from '../src/queue/qshape.js';
import { QueueStore } from '../src/queue/store.js';
import { QUEUE_NAMES, type MessageMeta, type QueueName } from '../src/queue/types.js';

const PROG = 'qshape';
const USAGE = [
  'usage: qshape [-s] [-p] [-m min_subdomains] [-l] [-b bucket_count] [-t bucket_time]',
  '\t[-w terminal_width] [-N batch_msg_count] [-n batch_top_domains]',
  '\t[-c config_dir] [--json] [queue_name ...]',
  "-s shows sender domain counts, -p adds parent domains ('.example.com', not top-level",
  'domains, only with at least min_subdomains (default 5) subdomains shown).',
  'Bucket ages in units of bucket_time (default 5) minutes: [0,1), [1,2), [2,4), [4,8) ...;',
  '-l makes them linear. The default queues are incoming and active.',
].join('\n');

function number(flag: string, value: string, integer: boolean): number {
  const ok = integer ? /^\d+$/.test(value) : /^(\d+(\.\d*)?|\.\d+)$/.test(value);
  if (!ok) usageError(PROG, USAGE, `-${flag}: bad number: "${value.slice(0, 100)}"`);
  return Number(value);
}

function main(): void {
  const parsed = parseCommandLine(PROG, USAGE, 'lhc:psw:b:t:m:n:N:v');
  if (!parsed) return;
  if (parsed.opts.some(([c]) => c === 'h')) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const options: QshapeOptions = {};
  let dir: string | undefined;
  let topDomains: number | undefined;
  for (const [c, v] of parsed.opts) {
    switch (c) {
      case 'c': dir = v; break;
      case 's': options.senders = true; break;
      case 'p': options.parents = true; break;
      case 'l': options.linear = true; break;
      // As qshape: a value out of range (w ≤ 80, others ≤ 0) leaves the default.
      case 'w': { const n = number(c, v!, true); if (n > 80) options.width = n; break; }
      case 'b': { const n = number(c, v!, true); if (n > 0) options.buckets = n; break; }
      case 't': { const n = number(c, v!, false); if (n > 0) options.bucketTime = n; break; }
      case 'm': { const n = number(c, v!, true); if (n > 0) options.minSubdomains = n; break; }
      case 'n': topDomains = number(c, v!, true); break;
      case 'N': number(c, v!, true); break; // interim results: the store is read at once, none are shown
    }
  }
  const queues: QueueName[] = [];
  for (const name of parsed.positionals.length ? parsed.positionals : ['incoming', 'active']) {
    if (name === 'maildrop') fatal(PROG, 'not supported: queue maildrop (its spool is not part of the queue store)');
    if (name.startsWith('/')) fatal(PROG, `not supported: queue directory path "${name.slice(0, 100)}": give a queue name (${QUEUE_NAMES.join(', ')})`);
    if (!(QUEUE_NAMES as readonly string[]).includes(name)) fatal(PROG, `unknown queue: "${name.slice(0, 100)}" (known: ${QUEUE_NAMES.join(', ')}, maildrop)`);
    if (!queues.includes(name as QueueName)) queues.push(name as QueueName);
  }
  // On a terminal qshape shows only the top rows (default 20, TOTAL included), as Postfix's.
  if (process.stdout.isTTY) options.topRows = topDomains ?? 20;
  const config = commandConfig(PROG, dir);
  const qdir = queueDirectory(config);
  const messages: MessageMeta[] = [];
  const now = Date.now();
  if (existsSync(join(qdir, 'queue.lmdb'))) {
    const store = QueueStore.open(qdir, { readOnly: true });
    try {
      for (const queue of queues) {
        for (const id of [...store.list(queue)]) {
          const meta = store.get(id);
          if (meta && meta.queue === queue) messages.push(meta);
        }
      }
    } finally {
      void store.close();
    }
  }
  const table = qshapeTable(messages, now, options);
  process.stdout.write(parsed.long.has('json') ? formatQshapeJson(table) : formatQshape(table, options));
}

try {
  main();
} catch (err) {
  fatal(PROG, (err as Error).message);
}
