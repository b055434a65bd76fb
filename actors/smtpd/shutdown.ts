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

export function handleShutdown(server: SMTPServer, listeners: net.Server[], exit: () => void): void {
  const connections = (server as unknown as { connections: Set<unknown> }).connections;
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
    if (connections.size === 0) return exit();
    if (Date.now() < deadline) return void setTimeout(poll, 50);
    server.close(exit);
    setTimeout(exit, 6000).unref();
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
