/**
 * The queue listing of postqueue -p / mailq and postqueue -j, with Postfix's layouts (showq,
 * postqueue's showq_compat and showq_json):
 *
 *   - queues in showq's order: active, incoming, deferred, hold (maildrop first in Postfix;
 *     we have none); within a queue, oldest first;
 *   - per message the pending recipients only; those with a deferral reason first (Postfix
 *     lists the defer log before the queue file), a "(reason)" line whenever the reason
 *     changes, right-aligned to end at column 78 (padding 76 − length, none when longer: long
 *     reasons are not wrapped, as in Postfix), "(reason unavailable)" after a reason;
 *   - the empty sender shows as empty_address_recipient (MAILER-DAEMON), in -j too;
 *   - the ID carries `*` (active), `!` (hold) and `#` (forced expiry);
 *   - column layout by enable_long_queue_ids, as Postfix: short "%-11s %7ld %20.20s %s",
 *     long "%-17s %8ld %19.19s %s".
 */
import { join } from 'node:path';
import { enableCommandCompileCache } from '../runtime/compile-cache.js';
import type { QueueStore } from './store.js';
import type { MessageMeta, QueueName } from './types.js';

/** showq's scan order. */
export const SHOWQ_ORDER: readonly QueueName[] = ['active', 'incoming', 'deferred', 'hold'];

export interface ListedRecipient {
  address: string;
  /** The last deferral reason, '' if none. */
  reason: string;
}

export interface ListedMessage {
  queueName: QueueName;
  queueId: string;
  /** Seconds since the epoch. */
  arrivalTime: number;
  messageSize: number;
  forcedExpire: boolean;
  sender: string;
  recipients: ListedRecipient[];
}

/** Postfix's printable(): control characters become '?'. */
function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, '?');
}

/** One message as showq reports it. */
export function listed(meta: MessageMeta, emptyAddress = 'MAILER-DAEMON'): ListedMessage {
  const pending = meta.recipients.filter((r) => !r.done);
  const withReason = pending.filter((r) => r.reason);
  const without = pending.filter((r) => !r.reason);
  return {
    queueName: meta.queue,
    queueId: meta.queueId,
    arrivalTime: Math.floor(meta.arrival / 1000),
    messageSize: meta.size,
    forcedExpire: meta.forcedExpire === true,
    sender: printable(meta.sender === '' ? emptyAddress : meta.sender),
    recipients: [...withReason, ...without].map((r) => ({ address: printable(r.address), reason: printable(r.reason ?? '') })),
  };
}

/** Every message in showq's order. */
export function collectQueue(store: QueueStore, emptyAddress = 'MAILER-DAEMON'): ListedMessage[] {
  const out: ListedMessage[] = [];
  for (const queue of SHOWQ_ORDER) {
    for (const id of [...store.list(queue)]) {
      // A damaged envelope (null) is left out, as Postfix's showq leaves out a queue file it cannot
      // read, until qmgr sets it aside in the corrupt queue (or postsuper --recover does).
      const meta = store.readable(id);
      if (meta && meta.queue === queue) out.push(listed(meta, emptyAddress));
    }
  }
  return out;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** C's asctime(localtime(t)) without the newline: "Wed Nov 25 01:38:37 2026". */
export function asctime(seconds: number): string {
  const d = new Date(seconds * 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ${d.getFullYear()}`;
}

/** printf("%-Ns") and ("%Ns"). */
const left = (s: string, n: number) => s.padEnd(n, ' ');
const right = (s: string, n: number) => s.padStart(n, ' ');

/** postqueue -p / mailq output. */
export function formatMailq(messages: ListedMessage[], longIds = false): string {
  if (messages.length === 0) return 'Mail queue is empty\n';
  // "%-11s %7s %-20s %s" / "%-17s %8s %-19s %s"
  const [idW, sizeW, timeW] = longIds ? [17, 8, 19] : [11, 7, 20];
  const row = (a: string, b: string, c: string, d: string) => `${left(a, idW)} ${right(b, sizeW)} ${left(c, timeW)} ${d}\n`;
  let out = longIds
    ? row('----Queue ID-----', '--Size--', '---Arrival Time----', '--Sender/Recipient------')
    : row('-Queue ID-', '--Size--', '----Arrival Time----', '-Sender/Recipient-------');
  let total = 0;
  messages.forEach((m, i) => {
    if (i > 0) out += '\n';
    let id = m.queueId;
    if (m.queueName === 'active') id += '*';
    else if (m.queueName === 'hold') id += '!';
    if (m.forcedExpire) id += '#';
    // asctime(...) has 24 characters plus "\n"; %20.20s keeps "Www Mmm dd hh:mm:ss " (with its
    // trailing blank), %19.19s "Www Mmm dd hh:mm:ss".
    const when = (asctime(m.arrivalTime) + '\n').slice(0, timeW);
    out += `${left(id, idW)} ${right(String(m.messageSize), sizeW)} ${right(when, timeW)} ${m.sender}\n`;
    let saved = '';
    for (const r of m.recipients) {
      if (r.reason !== saved) {
        saved = r.reason;
        const show = saved || 'reason unavailable';
        out += `${' '.repeat(Math.max(0, 76 - show.length))}(${show})\n`;
      }
      out += row('', '', '', r.address);
    }
    total += m.messageSize;
  });
  const n = messages.length;
  out += `\n-- ${Math.floor(total / 1024)} Kbytes in ${n} Request${n === 1 ? '' : 's'}.\n`;
  return out;
}

/** showq_json's string quoting: short escapes, other controls as \uXXXX (upper-case hex). */
function jsonQuote(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || c === 0x7f) {
      const short: Record<number, string> = { 8: '\\b', 12: '\\f', 10: '\\n', 13: '\\r', 9: '\\t' };
      out += short[c] ?? `\\u${c.toString(16).toUpperCase().padStart(4, '0')}`;
    } else if (ch === '\\' || ch === '"') {
      out += '\\' + ch;
    } else {
      out += ch;
    }
  }
  return out;
}

/** postqueue -j: one JSON object per message and line, with Postfix's field names and spacing. */
export function formatJson(messages: ListedMessage[]): string {
  return messages.map((m) => {
    const rcpts = m.recipients.map((r) => `{"address": "${jsonQuote(r.address)}"${r.reason ? `, "delay_reason": "${jsonQuote(r.reason)}"` : ''}}`);
    return `{"queue_name": "${jsonQuote(m.queueName)}", "queue_id": "${jsonQuote(m.queueId)}", "arrival_time": ${m.arrivalTime}, "message_size": ${m.messageSize}, "forced_expire": ${m.forcedExpire}, "sender": "${jsonQuote(m.sender)}", "recipients": [${rcpts.join(', ')}]}\n`;
  }).join('');
}

/** What a listing reads from the configuration (src/queue/listing-config.ts). */
export interface ListingConfig {
  /** queue_directory, resolved. */
  queueDir: string;
  /** empty_address_recipient. */
  emptyAddress: string;
  /** enable_long_queue_ids. */
  longIds: boolean;
  /** authorized_mailq_users and mail_owner (who may list the queue: src/system/user-acl.ts). */
  acl?: string;
  mailOwner?: string;
}

/**
 * The listing of a queue (empty when the store was never created). A running master lists it
 * (src/queue/showq.ts); else the store is read here, and the store module, and with it LMDB,
 * is loaded only then: mailq is quick on a fresh queue and while the server runs.
 */
/**
 * `beforeStore`: called before the store is read directly (no master answered), for the
 * commands' deep check of a stopped system's store (actors/master/store-check.ts).
 */
export async function listQueue(config: ListingConfig, json: boolean, beforeStore?: (queueDir: string) => Promise<void>): Promise<string> {
  // Not an ES module import of node:fs: see src/config/locate.ts.
  const { existsSync } = process.getBuiltinModule('node:fs');
  if (!existsSync(join(config.queueDir, 'queue.lmdb'))) return json ? '' : formatMailq([]);
  const messages = (await fromMaster(config)) ?? (await beforeStore?.(config.queueDir), await fromStore(config));
  return json ? formatJson(messages) : formatMailq(messages, config.longIds);
}

/** The running master's listing; null when none answers (or an older one does not know showq). */
async function fromMaster(config: ListingConfig): Promise<ListedMessage[] | null> {
  const { controlRequest, controlSocketPath } = await import('../runtime/control.js');
  try {
    const listed = await controlRequest(controlSocketPath(config.queueDir), 'showq', { emptyAddress: config.emptyAddress }, 5000);
    return Array.isArray(listed) ? (listed as ListedMessage[]) : null;
  } catch {
    return null;
  }
}

async function fromStore(config: ListingConfig): Promise<ListedMessage[]> {
  enableCommandCompileCache(); // LMDB's sources are most of this command's start-up
  const { QueueStore } = await import('./store.js');
  const store = QueueStore.open(config.queueDir, { readOnly: true });
  try {
    return collectQueue(store, config.emptyAddress);
  } finally {
    void store.close();
  }
}
