/**
 * Postfix-style maillog lines: "Nov 25 01:23:45 host postactor/smtpd[1234]: ID: text".
 *
 * Every thread has its own writer. Lines of one event turn are joined and written with one
 * write(2) on an O_APPEND descriptor, so lines from several threads interleave whole (each write
 * is atomic for a regular file and, below PIPE_BUF, for a pipe). `maillog_file` empty means
 * standard output in the foreground (`postactor start-fg`), and syslog when master runs in the
 * background (`postactor start`), as Postfix logs to syslog: master starts the relay
 * (./syslog.ts) and hands its descriptor and syslog_facility to every thread in workerData;
 * each record then goes as "<PRI>Mmm dd hh:mm:ss tag[pid]: text", without the host name,
 * which the syslog daemon adds.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { isMainThread, workerData } from 'node:worker_threads';
import { SEVERITY } from './syslog.js';
import { nameThisThread } from '../runtime/thread-name.js';

// Every actor thread logs, so this is where a worker gets its command's name (ps -L, bench/relay).
nameThisThread();

/** syslog: the relay's descriptor and the facility; null: plain lines to fd. */
export interface SyslogTarget { fd: number; facility: number }
let syslog: SyslogTarget | null = null;
/** PIPE_BUF on Linux: a write of at most this many bytes to the relay's FIFO is never split. */
const PIPE_BUF = 4096;
/** Postfix's MSG_SYSLOG_RECLEN: the longest text of one syslog record. */
const RECLEN = 2000;

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

let fd = 1;
let ownFd = false;
let host = hostname().split('.')[0] ?? 'localhost';
let syslogName = 'postactor';
let pending: string[] = [];
let scheduled = false;
let stampSecond = -1;
let stamp = '';

/** Directs this thread's log lines to `file` ('' = standard output). */
export function configureMaillog(options: { file: string; hostname?: string; syslogName?: string; syslog?: SyslogTarget }): void {
  if (ownFd) closeSync(fd);
  // A thread of a master that logs to syslog finds the relay in its workerData.
  const target = options.syslog ?? (isMainThread ? undefined : (workerData as { syslog?: SyslogTarget } | null)?.syslog);
  syslog = null;
  if (options.file) {
    fd = openSync(options.file, 'a', 0o640);
    ownFd = true;
  } else if (target) {
    syslog = target;
    fd = target.fd;
    ownFd = false;
  } else {
    fd = 1;
    ownFd = false;
  }
  if (options.hostname) host = options.hostname.split('.')[0]!;
  if (options.syslogName) syslogName = options.syslogName;
}

function timestamp(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== stampSecond) {
    const d = new Date(now);
    const two = (n: number) => (n < 10 ? '0' + n : String(n));
    stamp = `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
    stampSecond = second;
  }
  return stamp;
}

function flush(): void {
  scheduled = false;
  if (pending.length === 0) return;
  const lines = pending;
  pending = [];
  try {
    if (!syslog) return void writeSync(fd, lines.join(''));
    // Whole records per write, each write at most PIPE_BUF bytes.
    let chunk = '';
    for (const line of lines) {
      if (chunk && Buffer.byteLength(chunk) + Buffer.byteLength(line) > PIPE_BUF) {
        writeSync(fd, chunk);
        chunk = '';
      }
      chunk += line;
    }
    if (chunk) writeSync(fd, chunk);
  } catch {
    // A closed standard output must not take the server down; the line is lost, not the mail.
  }
}

/** Writes any buffered lines now (before exit). */
export function flushMaillog(): void {
  flush();
}

export interface Logger {
  info(text: string): void;
  warn(text: string): void;
  error(text: string): void;
  fatal(text: string): void;
  /** The tag the lines carry ("postactor/smtp"), for a line another thread writes on this one's behalf. */
  tag(): string;
}

/** A logger for one program name, e.g. "smtpd" → "postactor/smtpd[pid]: ...". */
export function maillog(program: string): Logger {
  return logger(() => `${syslogName}/${program}`);
}

/** A logger with a whole tag of its own, without syslog_name (postlog -t TAG → "TAG[pid]: ..."). */
export function maillogTag(tag: string): Logger {
  return logger(() => tag);
}

/**
 * Postfix's msg_vprintf passes every log text through printable(text, '?'): control characters
 * (and broken UTF-16, Node's form of bad UTF-8) become '?', so text a client sent can neither
 * forge log lines nor hide in them.
 */
const UNPRINTABLE = /[\x00-\x1f\x7f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Any character UNPRINTABLE could match (a cheap scan first: most log texts have none). */
const SUSPECT = /[\x00-\x1f\x7f\ud800-\udfff]/;

export function printable(text: string): string {
  return SUSPECT.test(text) ? text.replace(UNPRINTABLE, '?') : text;
}

function logger(tagOf: () => string): Logger {
  const write = (raw: string, level: keyof typeof SEVERITY = 'info') => {
    const text = printable(raw);
    if (syslog) {
      // One record a line: a newline inside the text would split it (syslog(3) sends it whole).
      const record = text.replace(/\n/g, ' ');
      const cut = Buffer.byteLength(record) > RECLEN ? Buffer.from(record).subarray(0, RECLEN).toString() : record;
      pending.push(`<${syslog.facility * 8 + SEVERITY[level]}>${timestamp()} ${tagOf()}[${process.pid}]: ${cut}\n`);
    } else {
      pending.push(`${timestamp()} ${host} ${tagOf()}[${process.pid}]: ${text}\n`);
    }
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  return {
    info: (text) => write(text),
    warn: (text) => write(`warning: ${text}`, 'warning'),
    error: (text) => write(`error: ${text}`, 'error'),
    fatal: (text) => {
      write(`fatal: ${text}`, 'fatal');
      flush();
    },
    tag: tagOf,
  };
}
