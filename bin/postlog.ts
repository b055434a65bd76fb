/**
 * postlog — Postfix's postlog(1), the logging utility for shell scripts:
 *   postlog [-iv] [-c config_dir] [-p priority] [-t tag] [text ...]
 * Logs `text` (the arguments joined by blanks) as one maillog record, or, without text, each
 * line of standard input as one record: "Mmm dd hh:mm:ss host TAG[pid]: text" in maillog_file
 * (standard output when it is empty). TAG is syslog_name/postlog unless -t replaces it whole.
 * Priorities as Postfix: info (default), warn/warning, error/err, fatal/crit, panic; all but
 * info prefix the text with "warning: ", "error: ", "fatal: ", "panic: ". As in Postfix ≥ 3.4
 * the pid is always in the tag (-i is accepted and does nothing), and fatal/panic only log:
 * postlog still exits 0. When standard error is a terminal the record is echoed there as
 * "TAG: text", as Postfix's msg_vstream does.
 */
import { configureMaillog, flushMaillog, maillog, maillogTag, type Logger } from '../src/log/maillog.js';
import { commandConfig, fatal, parseCommandLine, usageError } from '../src/queue/admin.js';

const PROG = 'postlog';
const USAGE = 'usage: postlog [-c config_dir] [-i] [-p priority] [-t tag] [-v] [text]';

type Level = 'info' | 'warning' | 'error' | 'fatal' | 'panic';

/** Postfix's severity names (case-insensitive). */
const LEVELS: Record<string, Level> = {
  info: 'info', warn: 'warning', warning: 'warning', error: 'error', err: 'error', fatal: 'fatal', crit: 'fatal', panic: 'panic',
};

async function* stdinLines(): AsyncGenerator<string> {
  let rest = Buffer.alloc(0);
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    let buf = rest.length ? Buffer.concat([rest, chunk]) : chunk;
    let nl: number;
    while ((nl = buf.indexOf(0x0a)) >= 0) {
      yield buf.subarray(0, nl).toString('utf8');
      buf = buf.subarray(nl + 1);
    }
    rest = Buffer.from(buf);
  }
  // A last line without its newline is still a record.
  if (rest.length) yield rest.toString('utf8');
}

async function main(): Promise<void> {
  const parsed = parseCommandLine(PROG, USAGE, 'c:ip:t:v', ['help']);
  if (!parsed) return;
  let dir: string | undefined;
  let tag: string | undefined;
  let level: Level = 'info';
  for (const [c, v] of parsed.opts) {
    if (c === 'c') dir = v;
    else if (c === 't') tag = v;
    else if (c === 'p') {
      const l = LEVELS[v!.toLowerCase()];
      if (!l) usageError(PROG, USAGE, `fatal: bad severity: "${v!.slice(0, 100)}"`);
      level = l;
    }
  }
  const config = commandConfig(PROG, dir);
  const file = config.get('maillog_file');
  try {
    configureMaillog({ file, hostname: config.get('myhostname'), syslogName: config.get('syslog_name') });
  } catch (err) {
    fatal(PROG, `open maillog_file ${file}: ${(err as Error).message}`);
  }
  const shownTag = tag ?? `${config.get('syslog_name')}/${PROG}`;
  const log: Logger = tag !== undefined ? maillogTag(tag) : maillog(PROG);
  const prefix = level === 'info' ? '' : `${level}: `;
  const emit = (text: string) => {
    if (level === 'info') log.info(text);
    else if (level === 'warning') log.warn(text);
    else if (level === 'error') log.error(text);
    else if (level === 'fatal') log.fatal(text);
    else log.info(`panic: ${text}`);
    if (process.stderr.isTTY) process.stderr.write(`${shownTag}: ${prefix}${text}\n`);
  };
  if (parsed.positionals.length > 0) {
    emit(parsed.positionals.join(' '));
  } else {
    for await (const line of stdinLines()) emit(line);
  }
  flushMaillog();
}

main().then(() => flushMaillog(), (err: Error) => fatal(PROG, err.message));
