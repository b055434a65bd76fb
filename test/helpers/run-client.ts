/** Runs an SMTP client program (openssl s_client, swaks) with input on its stdin, bounded in time. */
import { spawn } from 'node:child_process';

/** Resolves with the program's exit code and its stdout + stderr (killed after timeoutMs). */
export function runClient(cmd: string, args: string[], input: string, timeoutMs = 20_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    p.stdin.on('error', () => undefined); // the program may exit before reading it all
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
    // s_client sends what it reads as it reads it; a pause lets the handshake finish first.
    setTimeout(() => p.stdin.end(input), 500);
  });
}
