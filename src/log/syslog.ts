/**
 * Logging to syslog, as Postfix does when maillog_file is empty: one datagram per record on the
 * local syslog socket (/dev/log), "<PRI>Mmm dd hh:mm:ss syslog_name/program[pid]: text", with
 * syslog_facility and the severity of each record (info, warning, err, crit for fatal and
 * panic, as Postfix's msg_syslog), each record at most 2000 bytes of text.
 *
 * Node cannot send on a UNIX datagram socket (node:dgram is UDP only), so master starts one
 * small relay process (Perl, part of every Debian base system) that reads records, one a line,
 * from a FIFO in queue_directory/private and sends each as one datagram, reconnecting when the
 * syslog daemon restarts — what syslog(3) does in each Postfix process. master opens the FIFO
 * once, read-write (so the open does not wait and the relay sees end-of-file only when master's
 * process ends), and every thread writes to that same descriptor: records of up to PIPE_BUF
 * bytes are written whole, so lines from many threads never interleave.
 *
 * The socket is /dev/log, which Postfix cannot change either; the POSTACTOR_SYSLOG_SOCKET
 * environment variable names another (tests point it at a throwaway rsyslog).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** syslog(3) facility codes by Postfix's names (msg_syslog.c's list, Linux values). */
const FACILITIES: Readonly<Record<string, number>> = {
  auth: 4, authpriv: 10, cron: 9, daemon: 3, ftp: 11, kern: 0, lpr: 6, mail: 2, news: 7,
  syslog: 5, user: 1, uucp: 8, local0: 16, local1: 17, local2: 18, local3: 19, local4: 20,
  local5: 21, local6: 22, local7: 23,
};

/** The facility code of syslog_facility, or null when Postfix would not know the name. */
export function syslogFacility(name: string): number | null {
  return Object.hasOwn(FACILITIES, name) ? FACILITIES[name]! : null;
}

export const DEFAULT_SYSLOG_SOCKET = '/dev/log';

export function syslogSocketPath(): string {
  return process.env['POSTACTOR_SYSLOG_SOCKET'] || DEFAULT_SYSLOG_SOCKET;
}

/**
 * The relay: reads the FIFO (argv 0) line by line and sends each line as one datagram to the
 * socket (argv 1). A failed send reconnects once and tries again; if the daemon is still gone
 * the record is dropped, as syslog(3) drops it. It ends at end-of-file (master gone).
 */
const RELAY = String.raw`
use strict; use Socket;
my ($fifo, $path) = @ARGV;
open(my $in, '<', $fifo) or die "open $fifo: $!\n";
my $addr = pack_sockaddr_un($path);
my $s;
sub reconnect { close($s) if $s; undef $s; socket($s, PF_UNIX, SOCK_DGRAM, 0) or return; connect($s, $addr) or undef $s; }
reconnect();
while (my $line = <$in>) {
  chomp $line;
  next if $line eq '';
  next if $s && defined send($s, $line, 0);
  reconnect();
  send($s, $line, 0) if $s;
}
`;

export interface SyslogRelay {
  /** The FIFO descriptor every thread writes records to. */
  fd: number;
  facility: number;
  /** The relay process now (a new one after a restart). */
  child(): ChildProcess;
}

/** Starts the relay for this server; throws (with why) when syslog cannot be used. */
export function startSyslogRelay(queueDir: string, facilityName: string): SyslogRelay {
  const facility = syslogFacility(facilityName);
  if (facility === null) throw new Error(`syslog_facility = ${facilityName}: unrecognized value`);
  const dir = join(queueDir, 'private');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const fifo = join(dir, 'syslog');
  rmSync(fifo, { force: true });
  const made = spawnSync('mkfifo', ['-m', '600', fifo], { encoding: 'utf8' });
  if (made.error || made.status !== 0) throw new Error(`mkfifo ${fifo}: ${made.error?.message ?? made.stderr.trim()}`);
  // Without the relay the FIFO fills and every thread's next log write would wait: no Perl, no start.
  const perl = spawnSync('perl', ['-e', '1'], { stdio: 'ignore' });
  if (perl.error || perl.status !== 0) throw new Error(`syslog: cannot run perl, which sends the log to ${syslogSocketPath()}: ${perl.error?.message ?? `exit status ${perl.status}`}; set maillog_file or run start-fg`);
  const fd = openSync(fifo, 'r+');
  let child: ChildProcess;
  // A relay that ends (killed, crashed) is started again, at most once a second, so that the
  // FIFO keeps draining; the records in the FIFO wait for the new one.
  const start = () => {
    const started = Date.now();
    child = spawn('perl', ['-e', RELAY, fifo, syslogSocketPath()], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', (err) => process.stderr.write(`postactor/master: warning: syslog relay: ${err.message}\n`));
    child.on('exit', () => void setTimeout(start, Math.max(0, 1000 - (Date.now() - started))).unref());
    child.unref();
  };
  start();
  return { fd, facility, child: () => child };
}

/** syslog severities of Postfix's levels (msg_syslog.c: info, warning, err, crit, crit). */
export const SEVERITY = { info: 6, warning: 4, error: 3, fatal: 2, panic: 2 } as const;
