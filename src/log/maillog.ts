/**
 * Postfix-style maillog lines: "Nov 25 01:23:45 host postactor/smtpd[1234]: ID: text".
 *
 * Every thread has its own writer. Lines of one event turn are joined and written with one
 * write(2) on an O_APPEND descriptor, so lines from several threads interleave whole (each write
 * is atomic for a regular file and, below PIPE_BUF, for a pipe). `maillog_file` empty means
 * standard output, as Postfix's postlogd does under `postfix start-fg`.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';

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
export function configureMaillog(options: { file: string; hostname?: string; syslogName?: string }): void {
  if (ownFd) closeSync(fd);
  if (options.file) {
    fd = openSync(options.file, 'a', 0o640);
    ownFd = true;
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
  const text = pending.join('');
  pending = [];
  try {
    writeSync(fd, text);
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

export function printable(text: string): string {
  return text.replace(UNPRINTABLE, '?');
}

function logger(tagOf: () => string): Logger {
  const write = (text: string) => {
    pending.push(`${timestamp()} ${host} ${tagOf()}[${process.pid}]: ${printable(text)}\n`);
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  return {
    info: write,
    warn: (text) => write(`warning: ${text}`),
    error: (text) => write(`error: ${text}`),
    fatal: (text) => {
      write(`fatal: ${text}`);
      flush();
    },
  };
}
