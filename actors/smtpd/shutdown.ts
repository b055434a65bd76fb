/**
 * How an smtpd thread ends: retired by a reload, or stopped with the server.
 *
 * - `postactor:retire` (reload): the new generation already listens, so this one closes its
 *   listening sockets at once and lets every session it accepted finish on the configuration it
 *   began with, however long it lasts (each command is still bounded by smtpd_timeout); the
 *   thread exits when its last session ends. That is Postfix's "don't drop the already accepted
 *   client request after postfix reload; that would be rude": an old smtpd process serves its
 *   client to the end, then finds the master gone from its status pipe and exits. No session
 *   ever hears a 421 because of a reload.
 * - `postactor:stop` (postactor stop, or a stop that arrives while retired): close the listeners,
 *   give the sessions `STOP_GRACE_MS` to end, then close the rest (smtp-server's
 *   "421 … shutting down"), and exit.
 */
import type * as net from 'node:net';
import { parentPort } from 'node:worker_threads';
import type { SMTPServer } from 'smtp-server';

/** How long a stopping (not retiring) smtpd waits for its sessions before it closes them. */
export const STOP_GRACE_MS = 10_000;

/** `waiting`: connections parked for a session place (sessions.ts), which a retired thread still serves. */
export function handleShutdown(server: SMTPServer, listeners: net.Server[], exit: () => void, waiting: () => number = () => 0): void {
  const connections = (server as unknown as { connections: Set<{ send(code: number, text: string): void; close(): void }> }).connections;
  let closed = false;
  let deadline = Infinity;
  let polling = false;
  const closeListeners = () => {
    if (closed) return;
    closed = true;
    for (const l of listeners) l.close();
    // The master's reload is done once no old listener accepts any more.
    parentPort!.postMessage({ type: 'postactor:closed' });
  };
  const poll = () => {
    if (connections.size === 0 && (waiting() === 0 || Date.now() >= deadline)) return exit();
    if (Date.now() < deadline) return void setTimeout(poll, 50);
    // The grace period is over: each session left hears smtp-server's farewell, its socket is
    // ended (flushed), and the thread exits. (server.close() would not do it: the listeners
    // are closed already, so its callback runs at once, before its own 421 timer.)
    for (const c of [...connections]) {
      c.send(421, 'Server shutting down');
      c.close();
    }
    setTimeout(exit, 500);
  };
  parentPort!.on('message', (msg: { type?: string }) => {
    if (msg?.type === 'postactor:retire') closeListeners();
    else if (msg?.type === 'postactor:stop') {
      closeListeners();
      deadline = Math.min(deadline, Date.now() + STOP_GRACE_MS);
    } else return;
    if (!polling) {
      polling = true;
      poll();
    }
  });
}
