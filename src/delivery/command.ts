/**
 * Runs the external command (Postfix's pipe_command, in src/global: pipe(8) and local(8)'s
 * command deliveries): its own process group, a clean
 * environment (PATH=/usr/bin:/bin plus export_environment), stdin the message, stdout and
 * stderr captured together (first 4096 bytes, tabs and newlines turned into spaces, other
 * control characters into "_"), killed with its offspring at the time limit.
 *
 * The result in Postfix's words (pipe_command.c, sys_exits.c):
 *   exit 0                      sent
 *   time limit                  5.3.0 'Command time limit exceeded: "cmd"' (returned)
 *   killed by a signal          5.3.0 'Command died with signal N: "cmd"'
 *   output "X.Y.Z text"         that status and text (4.x.y defers)
 *   sysexits code (64…78)       its status and text, e.g. 75 → 4.3.0 "temporary failure"
 *   any other status            5.3.0 'Command died with status N: "cmd"'
 * each followed by ". Command output: …" when the command said something.
 */
import { spawn } from 'node:child_process';

export type CommandResult =
  | { ok: true; output: string }
  | { ok: false; dsn: string; text: string };

const SYSEXITS: Record<number, [string, string]> = {
  64: ['5.3.0', 'command line usage error'],
  65: ['5.6.0', 'data format error'],
  66: ['5.3.0', 'cannot open input'],
  67: ['5.1.1', 'user unknown'],
  68: ['5.1.2', 'host name unknown'],
  69: ['5.3.0', 'service unavailable'],
  70: ['5.3.0', 'internal software error'],
  71: ['4.3.0', 'system resource problem'],
  72: ['5.3.0', 'critical OS file missing'],
  73: ['5.2.0', "can't create user output file"],
  74: ['5.3.0', 'input/output error'],
  75: ['4.3.0', 'temporary failure'],
  76: ['5.5.0', 'remote error in protocol'],
  77: ['5.7.0', 'permission denied'],
  78: ['5.3.5', 'local configuration error'],
};

const OUTPUT_LIMIT = 4096;

export interface RunOptions {
  argv: string[];
  input: Buffer;
  timeLimitMs: number;
  env: Record<string, string>;
  cwd: string;
  /** Set only when we may switch (running as root). */
  uid?: number;
  gid?: number;
}

function printable(buf: Buffer): string {
  let s = '';
  for (const b of buf) s += b === 9 || b === 10 ? ' ' : b < 32 || b === 127 ? '_' : String.fromCharCode(b);
  return Buffer.from(s, 'latin1').toString('utf8');
}

/**
 * How local(8) runs a command (an alias's or .forward's |command, mailbox_command): with
 * `local_command_shell` set (e.g. "/usr/sbin/smrsh -c"), that value split at white space with the
 * command as its last argument, whatever the command holds, as Postfix's pipe_command does;
 * without it, /bin/sh -c (Postfix runs the shell when the command has shell syntax and execs it
 * directly otherwise: the same program runs either way).
 */
export function commandArgv(command: string, shell: string): string[] {
  const words = shell.split(/[ \t\r\n]+/).filter((w) => w !== '');
  return words.length > 0 ? [...words, command] : ['/bin/sh', '-c', command];
}

export function runCommand(o: RunOptions): Promise<CommandResult> {
  return new Promise((resolve) => {
    const cmd = o.argv[0]!;
    const chunks: Buffer[] = [];
    let captured = 0;
    let timedOut = false;
    let spawnError: NodeJS.ErrnoException | null = null;
    const child = spawn(cmd, o.argv.slice(1), {
      cwd: o.cwd,
      env: o.env,
      detached: true, // setsid(): the time limit kills the whole process group
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(o.uid !== undefined ? { uid: o.uid, gid: o.gid } : {}),
    });
    const take = (d: Buffer) => {
      if (captured >= OUTPUT_LIMIT) return;
      const part = d.subarray(0, OUTPUT_LIMIT - captured);
      chunks.push(part);
      captured += part.length;
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.stdin.on('error', () => { /* EPIPE: the command may stop reading early */ });
    child.on('error', (err: NodeJS.ErrnoException) => { spawnError = err; });
    const timer = setTimeout(() => {
      timedOut = true;
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
    }, o.timeLimitMs);
    child.stdin.end(o.input);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const out = printable(Buffer.concat(chunks)).trimEnd();
      const more = out ? `. Command output: ${out}` : '';
      if (spawnError) {
        // Postfix's child reports a failed execvp and exits 1.
        resolve({ ok: false, dsn: '5.3.0', text: `Command died with status 1: "${cmd}". Command output: execvp ${cmd}: ${spawnError.code === 'ENOENT' ? 'No such file or directory' : spawnError.message}` });
      } else if (timedOut) {
        resolve({ ok: false, dsn: '5.3.0', text: `Command time limit exceeded: "${cmd}"${more}` });
      } else if (signal) {
        const n = ({ SIGKILL: 9, SIGTERM: 15, SIGSEGV: 11, SIGABRT: 6, SIGINT: 2, SIGHUP: 1, SIGQUIT: 3, SIGPIPE: 13 } as Record<string, number>)[signal] ?? signal;
        resolve({ ok: false, dsn: '5.3.0', text: `Command died with signal ${n}: "${cmd}"${more}` });
      } else if (code === 0) {
        resolve({ ok: true, output: out });
      } else {
        const m = /^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/.exec(out);
        if (m) resolve({ ok: false, dsn: `${m[1]}.${m[2]}.${m[3]}`, text: out.slice(m[0].length) });
        else if (SYSEXITS[code!]) resolve({ ok: false, dsn: SYSEXITS[code!]![0], text: SYSEXITS[code!]![1] + more });
        else resolve({ ok: false, dsn: '5.3.0', text: `Command died with status ${code}: "${cmd}"${more}` });
      }
    });
  });
}
