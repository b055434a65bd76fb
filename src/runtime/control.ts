/**
 * The master's control socket (queue_directory/public/master.sock): one JSON request per line,
 * one JSON reply per line. Used by `postactor status` and `postactor flush`; the queue admin
 * commands of issue 6 will use it too. Only the owner of the queue directory can reach it
 * (the directory is 0700).
 */
import type { Server } from 'node:net';
import { join } from 'node:path';

// Not ES imports of node:net / node:fs: mailq and postqueue load this file as clients, and an
// ES import of node:fs loads fs/promises and the streams (see src/config/locate.ts).
const { createServer, createConnection } = process.getBuiltinModule('node:net');
const { rmSync } = process.getBuiltinModule('node:fs');

export type Handlers = Record<string, (args?: unknown) => Promise<unknown>>;

export function controlSocketPath(queueDirectory: string): string {
  return join(queueDirectory, 'public', 'master.sock');
}

export class ControlServer {
  private readonly server: Server;

  constructor(private readonly path: string, handlers: Handlers) {
    this.server = createServer((socket) => {
      let buffer = '';
      socket.setEncoding('utf8');
      socket.on('error', () => socket.destroy());
      socket.on('data', (chunk: string) => {
        buffer += chunk;
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          let request: { cmd?: string; args?: unknown };
          try {
            request = JSON.parse(line) as { cmd?: string; args?: unknown };
          } catch {
            socket.write(JSON.stringify({ ok: false, error: 'malformed request' }) + '\n');
            continue;
          }
          const handler = request.cmd ? handlers[request.cmd] : undefined;
          if (!handler) {
            socket.write(JSON.stringify({ ok: false, error: `unknown command: ${request.cmd}` }) + '\n');
            continue;
          }
          handler(request.args).then(
            (value) => socket.write(JSON.stringify({ ok: true, value }) + '\n'),
            (err: Error) => socket.write(JSON.stringify({ ok: false, error: err.message }) + '\n'),
          );
        }
      });
    });
  }

  listen(): Promise<void> {
    rmSync(this.path, { force: true });
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.path, () => resolve());
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => {
      rmSync(this.path, { force: true });
      resolve();
    }));
  }
}

/** Sends one command to a running master; rejects if none answers within timeoutMs. */
export function controlRequest(path: string, cmd: string, args?: unknown, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buffer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('timeout talking to the master'));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('connect', () => socket.write(JSON.stringify({ cmd, args }) + '\n'));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      socket.end();
      const reply = JSON.parse(buffer.slice(0, nl)) as { ok: boolean; value?: unknown; error?: string };
      if (reply.ok) resolve(reply.value);
      else reject(new Error(reply.error));
    });
  });
}
