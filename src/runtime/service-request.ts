/**
 * Requests to a service from any thread, pool threads included. A pool thread (./pool-thread.ts)
 * is a client of the pool threads of other services like a long-lived worker: its first request
 * to one goes through the master, which wires it, and the next ones go on direct channels. Any
 * other thread posts the request to the master's request mailbox (a BroadcastChannel, as in
 * mailbox.ts) and the master hands it to the router; the reply comes back on a mailbox of the
 * asking thread. Used where one agent passes a delivery to another (local(8)'s
 * mailbox_transport, as Postfix's deliver_pass connects to the other transport's socket).
 *
 * The payloads are small (a queue ID and a recipient, never message content). Every request is
 * bounded by its timeout; a missing master or service answers with a ServiceError.
 */
import { BroadcastChannel, threadId } from 'node:worker_threads';
import type { Router } from './router.js';
import { ServiceError, type WireError } from './wire.js';

interface RequestFrame { id: number; replyTo: string; to: string; body: unknown }
type ReplyFrame = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: WireError };

const requestsName = (instance: string) => `postactor:${instance}:master:requests`;

/** In the master: answers the requests posted by any thread. Returns a function that stops. */
export function serveServiceRequests(instance: string, router: Router): () => void {
  const inbox = new BroadcastChannel(requestsName(instance));
  inbox.unref();
  const outboxes = new Map<string, BroadcastChannel>();
  const reply = (to: string, frame: ReplyFrame) => {
    let out = outboxes.get(to);
    if (!out) {
      out = new BroadcastChannel(to);
      out.unref();
      outboxes.set(to, out);
    }
    out.postMessage(frame);
  };
  inbox.onmessage = (event) => {
    const f = (event as MessageEvent).data as RequestFrame;
    router.request(f.to, f.body).then(
      (value) => reply(f.replyTo, { id: f.id, ok: true, value }),
      (err: unknown) => reply(f.replyTo, { id: f.id, ok: false, error: err instanceof ServiceError ? { code: err.code, message: err.message } : { code: 'ERROR', message: String((err as Error)?.message ?? err) } }),
    );
  };
  return () => {
    inbox.close();
    for (const o of outboxes.values()) o.close();
  };
}

type ThreadRequester = <T>(service: string, body: unknown, transfer?: ArrayBuffer[]) => Promise<T>;
let threadRequests: ThreadRequester | null = null;

/** In a pool thread: its requests go through the pool's port and its direct channels. */
export function useThreadRequests(requester: ThreadRequester): void {
  threadRequests = requester;
}

let outbox: BroadcastChannel | null = null;
let inbox: BroadcastChannel | null = null;
let nextId = 1;
const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

/** Sends `body` to `service` and resolves to its reply; rejects with a ServiceError (or a timeout). */
export function requestService<T>(instance: string, service: string, body: unknown, timeoutMs: number): Promise<T> {
  if (threadRequests) {
    const asked = threadRequests<T>(service, body);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new ServiceError('ERROR', `${service}: no reply within ${Math.round(timeoutMs / 1000)}s`)), timeoutMs);
      timer.unref();
      asked.then(resolve, reject).finally(() => clearTimeout(timer));
    });
  }
  const replyTo = `postactor:${instance}:reply:${process.pid}:${threadId}`;
  if (!inbox) {
    inbox = new BroadcastChannel(replyTo);
    inbox.onmessage = (event) => {
      const f = (event as MessageEvent).data as ReplyFrame;
      const w = waiting.get(f.id);
      if (!w) return;
      waiting.delete(f.id);
      clearTimeout(w.timer);
      if (waiting.size === 0) inbox?.unref();
      if (f.ok) w.resolve(f.value);
      else w.reject(new ServiceError(f.error.code, f.error.message));
    };
  }
  if (!outbox) {
    outbox = new BroadcastChannel(requestsName(instance));
    outbox.unref();
  }
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      waiting.delete(id);
      if (waiting.size === 0) inbox?.unref();
      reject(new ServiceError('ERROR', `${service}: no reply within ${Math.round(timeoutMs / 1000)}s`));
    }, timeoutMs);
    timer.unref();
    waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
    inbox!.ref();
    outbox!.postMessage({ id, replyTo, to: service, body } satisfies RequestFrame);
  });
}
