/**
 * Queue IDs in the shape of Postfix's long queue IDs (enable_long_queue_ids=yes).
 *
 * Postfix's long ID is: seconds (base 52, at least 6 digits), microseconds (base 52, 4 digits),
 * the separator 'z', then the inode number in base 51. We keep the first three parts exactly and
 * replace the inode (we have no queue file) with a per-thread sequence and the thread id, so IDs
 * made by several worker threads in the same microsecond still differ. The alphabet is in ASCII
 * order, and the time parts are fixed width, so sorting IDs as strings sorts them by arrival.
 */

/** 0-9, then consonants: no vowels, so an ID never spells a word. 'z' is excluded from base 51. */
const ALPHABET = '0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz';
const SEPARATOR = 'z';

function encode(value: number, base: number, width: number): string {
  let out = '';
  do {
    out = ALPHABET[value % base] + out;
    value = Math.floor(value / base);
  } while (value > 0);
  return out.padStart(width, '0');
}

let lastMicros = 0;
let sequence = 0;
/** This thread's part, from worker_threads' threadId, read on first use (see newQueueId). */
let ownThreadPart: string | undefined;
const startMicros = Date.now() * 1000;
const startHr = process.hrtime.bigint();

/** Wall-clock microseconds, strictly increasing within this thread. */
function nowMicros(): number {
  const micros = startMicros + Number((process.hrtime.bigint() - startHr) / 1000n);
  if (micros <= lastMicros) return lastMicros;
  return micros;
}

/**
 * A new queue ID, unique within this process and sortable by arrival time. A caller that knows
 * its thread id passes it (sendmail's maildrop writer: 0), which spares a short-lived command
 * loading worker_threads (with the streams behind it: milliseconds of start-up).
 */
export function newQueueId(thread?: number): string {
  const threadPart = thread === undefined
    ? (ownThreadPart ??= encode(process.getBuiltinModule('node:worker_threads').threadId % (51 * 51), 51, 2))
    : encode(thread % (51 * 51), 51, 2);
  const micros = nowMicros();
  if (micros === lastMicros) sequence++;
  else sequence = 0;
  lastMicros = micros;
  const seconds = Math.floor(micros / 1_000_000);
  const usec = micros % 1_000_000;
  return encode(seconds, 52, 6) + encode(usec, 52, 4) + SEPARATOR + encode(sequence, 51, 2) + threadPart;
}

const QID_PATTERN = /^[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+$/;

/** True if `s` looks like one of our queue IDs (used to validate admin input). */
export function isQueueId(s: string): boolean {
  return QID_PATTERN.test(s);
}

/** The arrival time (ms since the epoch) encoded in a queue ID. */
export function queueIdTime(qid: string): number {
  let seconds = 0;
  for (let i = 0; i < 6; i++) seconds = seconds * 52 + ALPHABET.indexOf(qid[i]!);
  let usec = 0;
  for (let i = 6; i < 10; i++) usec = usec * 52 + ALPHABET.indexOf(qid[i]!);
  return seconds * 1000 + Math.floor(usec / 1000);
}
