/** Runs an SMTP client program (openssl s_client, swaks) with input on its stdin, bounded in time. */
import { spawn } from 'node:child_process';

export interface RunClientOptions {
  /** The program is killed after this long (default 20 s). */
  timeoutMs?: number;
  /**
   * How long to wait before writing the input and closing stdin (default 500 ms, meant to let a
   * TLS handshake finish first). openssl s_client needs no such pause: its loop in
   * apps/s_client.c polls stdin only once SSL_in_init() is over (tty_on), so the input waits in
   * the pipe until the handshake is done, with or without -quiet; callers that run only
   * s_client (or programs that do not read stdin) may pass 0.
   */
  inputDelayMs?: number;
  /**
   * Write the input only once this holds (checked every 20 ms after inputDelayMs), for input
   * that must wait for something the program does after its handshake: a TLSv1.3 session ticket
   * arrives after it, and s_client writes -sess_out only then.
   */
  inputWhen?: () => boolean;
}

/** Resolves with the program's exit code and its stdout + stderr (killed after timeoutMs; a number is timeoutMs). */
export function runClient(cmd: string, args: string[], input: string, opts: number | RunClientOptions = {}): Promise<{ code: number | null; out: string }> {
  const { timeoutMs = 20_000, inputDelayMs = 500, inputWhen } = typeof opts === 'number' ? { timeoutMs: opts } : opts;
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    p.stdin.on('error', () => undefined); // the program may exit before reading it all
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    let closed = false;
    p.on('close', (code) => {
      closed = true;
      clearTimeout(t);
      resolve({ code, out });
    });
    const write = () => {
      if (closed) return;
      if (inputWhen && !inputWhen()) setTimeout(write, 20);
      else p.stdin.end(input);
    };
    if (inputDelayMs > 0) setTimeout(write, inputDelayMs);
    else write();
  });
}
