/**
 * postcat — Postfix's postcat(1) for queued messages:
 *   postcat [-c config_dir] [-bdehv] -q queue_id...
 * -e envelope records, -h header, -b body; none of them = all three. Section markers
 * ("*** ENVELOPE RECORDS queue/ID ***", MESSAGE CONTENTS, HEADER EXTRACTED, MESSAGE FILE END)
 * appear with -e, as in Postfix. -d prints the decimal record type before each record.
 * We have no queue files: the records are rendered from the store's envelope (MessageMeta),
 * with Postfix's record names; the message_size record's data offset is 0.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { queueDirectory } from '../src/config/index.js';
import { commandConfig, fatal, parseCommandLine, usageError } from '../src/queue/admin.js';
import { asctime } from '../src/queue/listing.js';
import { isQueueId } from '../src/queue/qid.js';
import { contentChecksum } from '../src/queue/integrity.js';
import { QueueStore } from '../src/queue/store.js';
import type { MessageMeta } from '../src/queue/types.js';

const PROG = 'postcat';
const USAGE = 'usage: postcat [-b (body text)] [-c config_dir] [-d (decimal record type)] [-e (envelope records)] [-h (header text)] [-q (access queue)] [-v] [--json] -q queue_id...';

/** Postfix record types (rec_type.h), for -d. */
const REC = { SIZE: 'C', TIME: 'T', ATTR: 'A', FROM: 'S', RCPT: 'R', DONE: 'D', ORCP: 'O', DSN_ORCPT: 'o', DSN_NOTIFY: 'n', DSN_ENVID: 'i', DSN_RET: '<', MESG: 'M', XTRA: 'X', END: 'E', NORM: 'N' } as const;

const NOTIFY_BITS: Record<string, number> = { NEVER: 1, SUCCESS: 2, FAILURE: 4, DELAY: 8 };

interface Flags { env: boolean; header: boolean; body: boolean; dec: boolean }

function postcat(meta: MessageMeta, content: Buffer, f: Flags): string {
  const path = `${meta.queue}/${meta.queueId}`;
  let out = '';
  const tag = (type: string) => (f.dec ? `${String(type.charCodeAt(0)).padStart(3, ' ')} ` : '');
  const rec = (type: string, text: string) => { out += `${tag(type)}${text}\n`; };
  const marker = (type: string, text: string) => { out += `${tag(type)}*** ${text} ${path} ***\n`; };

  if (f.env) {
    out += `*** ENVELOPE RECORDS ${path} ***\n`;
    const pending = meta.recipients.length;
    const fields = [meta.size, 0, pending, 0, meta.size, 0].map((n) => String(n).padStart(15, ' ')).join(' ');
    rec(REC.SIZE, `message_size: ${fields}`);
    const arrival = Math.floor(meta.arrival / 1000);
    rec(REC.TIME, `message_arrival_time: ${asctime(arrival)}`);
    rec(REC.ATTR, `create_time: ${asctime(arrival)}`);
    if (meta.client) {
      const c = meta.client;
      rec(REC.ATTR, `named_attribute: log_client_name=${c.name}`);
      rec(REC.ATTR, `named_attribute: log_client_address=${c.addr}`);
      rec(REC.ATTR, `named_attribute: log_client_port=${c.port}`);
      rec(REC.ATTR, `named_attribute: log_message_origin=${c.name}[${c.addr}]`);
      rec(REC.ATTR, `named_attribute: log_helo_name=${c.helo}`);
      rec(REC.ATTR, `named_attribute: log_protocol_name=${c.protocol}`);
    }
    rec(REC.FROM, `sender: ${meta.sender}`);
    if (meta.envId) rec(REC.DSN_ENVID, `dsn_envelope_id: ${meta.envId}`);
    if (meta.ret) rec(REC.DSN_RET, `dsn_return_flags: ${meta.ret === 'FULL' ? 1 : 2}`);
    for (const r of meta.recipients) {
      if (r.orcpt) rec(REC.DSN_ORCPT, `dsn_original_recipient: ${r.orcpt}`);
      if (r.notify?.length) rec(REC.DSN_NOTIFY, `dsn_notify_flags: ${r.notify.reduce((m, k) => m | (NOTIFY_BITS[k.toUpperCase()] ?? 0), 0)}`);
      rec(r.done ? REC.DONE : REC.RCPT, `${r.done ? 'done_recipient' : 'recipient'}: ${r.address}`);
    }
    marker(REC.MESG, 'MESSAGE CONTENTS');
  }
  if (f.header || f.body) {
    const text = content.toString('latin1').replace(/\r\n/g, '\n');
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    // The header ends at the first line that is neither a header field nor a continuation.
    let i = 0;
    while (i < lines.length && (/^[!-9;-~]+:/.test(lines[i]!) || (i > 0 && /^[ \t]/.test(lines[i]!)))) i++;
    const emit = (l: string) => { out += `${tag(REC.NORM)}${l}\n`; };
    if (f.header) lines.slice(0, i).forEach(emit);
    if (f.body) lines.slice(i).forEach(emit);
  }
  if (f.env) {
    marker(REC.XTRA, 'HEADER EXTRACTED');
    marker(REC.END, 'MESSAGE FILE END');
  }
  return out;
}

function main(): void {
  const parsed = parseCommandLine(PROG, USAGE, 'bc:dehoqv');
  if (!parsed) return;
  const f: Flags = { env: false, header: false, body: false, dec: false };
  let dir: string | undefined;
  let queue = false;
  for (const [c, v] of parsed.opts) {
    if (c === 'c') dir = v;
    else if (c === 'b') f.body = true;
    else if (c === 'h') f.header = true;
    else if (c === 'e') f.env = true;
    else if (c === 'd') f.dec = true;
    else if (c === 'q') queue = true;
  }
  if (!f.env && !f.header && !f.body) f.env = f.header = f.body = true;
  if (!queue || parsed.positionals.length === 0) usageError(PROG, USAGE, queue ? 'no queue ID given' : 'only queued messages can be shown: use -q queue_id (there are no queue files to read)');
  const config = commandConfig(PROG, dir);
  const queueDir = queueDirectory(config);
  const store = existsSync(join(queueDir, 'queue.lmdb')) ? QueueStore.open(queueDir, { readOnly: true }) : null;
  const json = parsed.long.has('json');
  for (const id of parsed.positionals) {
    if (!isQueueId(id)) fatal(PROG, `bad mail queue ID: ${id}`);
    const meta = store?.get(id);
    if (!meta) fatal(PROG, `open queue file ${id}: No such file or directory`);
    const content = store!.content(id) ?? Buffer.alloc(0);
    // The checksum stored with the message (src/queue/integrity.ts): damaged content is shown,
    // since that is what an operator looking into the corrupt queue wants, but said so.
    if (meta.checksum !== undefined && contentChecksum(content) !== meta.checksum) {
      process.stderr.write(`${PROG}: warning: ${id}: message content does not match its checksum: the stored message is damaged\n`);
      process.exitCode = 1;
    }
    if (json) process.stdout.write(JSON.stringify({ ...meta, content: content.toString('latin1') }) + '\n');
    else process.stdout.write(postcat(meta, content, f));
  }
  void store?.close();
}

try {
  main();
} catch (err) {
  fatal(PROG, (err as Error).message);
}
