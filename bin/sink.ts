/**
 * postactor-sink: a counting SMTP sink for benchmarks (like Postfix's smtp-sink).
 *
 *   node dist/bin/sink.js [--listen 127.0.0.1:2626] [--keep] [--quiet]
 *
 * Prints one line per second while messages arrive (totals and rate), and the totals on
 * SIGINT/SIGTERM, then exits 0. --keep keeps messages in memory (for debugging only),
 * --quiet suppresses the per-second lines. Bad flags: usage on stderr, exit 2.
 */

import { parseArgs } from 'node:util';

import { SmtpSink } from '../src/smtp/sink.js';

const USAGE = 'usage: sink [--listen host:port] [--keep] [--quiet]   (default --listen 127.0.0.1:2626)';

function usage(msg?: string): never {
  if (msg) process.stderr.write(`sink: ${msg}\n`);
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}

function parseListen(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  if (i <= 0) usage(`bad --listen value "${s}"`);
  let host = s.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(s.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`bad port in --listen "${s}"`);
  return { host, port };
}

let values: { listen?: string; keep?: boolean; quiet?: boolean; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      listen: { type: 'string', default: '127.0.0.1:2626' },
      keep: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (e) {
  usage((e as Error).message);
}
if (values.help) { process.stdout.write(`${USAGE}\n`); process.exit(0); }

const { host, port } = parseListen(values.listen!);
const sink = new SmtpSink({ keepMessages: values.keep === true });
const bound = await sink.listen(port, host);
process.stdout.write(`sink: listening on ${host}:${bound}\n`);

const started = Date.now();
let lastMessages = 0;
const totals = () => {
  const s = sink.stats;
  return `connections=${s.connections} messages=${s.messages} recipients=${s.recipients} rejected=${s.rejectedRecipients} bytes=${s.bytes}`;
};
const ticker = setInterval(() => {
  const m = sink.stats.messages;
  if (m === lastMessages || values.quiet) { lastMessages = m; return; }
  process.stdout.write(`sink: ${totals()} rate=${m - lastMessages}/s\n`);
  lastMessages = m;
}, 1000);

const stop = () => {
  clearInterval(ticker);
  const secs = (Date.now() - started) / 1000;
  process.stdout.write(`sink: total ${totals()} elapsed=${secs.toFixed(1)}s\n`);
  void sink.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
