/**
 * The actor side of a long-lived worker: its data port to the router, its direct channels to the
 * pool threads of the services it uses (./channels.ts: requests go there once the master wired
 * them, through the router before), with a bounded number in flight, its control API exposed to
 * the master with comlink, and the handler for requests the router sends it.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { DirectChannels } from './channels.js';
import { PendingReplies, ServiceError, type ActorWorkerData, type Frame } from './wire.js';
import { collectWhenQuiet } from './idle-gc.js';

export interface ActorOptions<Req, Res> {
  /** Answers a request the router routed to this actor. */
  onRequest?: (body: Req) => Promise<Res> | Res;
  /** Handles a one-way message. */
  onMessage?: (body: unknown) => void;
  /** Control-plane API exposed to the master (status, flush, shutdown, …). */
  control?: Record<string, (...args: never[]) => unknown>;
  /** Most requests this thread may have in flight before `request` fails fast with BUSY. */
  maxInFlight?: number;
}

export interface Actor {
  readonly data: ActorWorkerData<unknown>;
  /** `affinity`: requests with the same key go to the same thread of the service (./channels.ts). */
  request<T>(to: string, body: unknown, transfer?: ArrayBuffer[], affinity?: string): Promise<T>;
  send(to: string, body: unknown): void;
  inFlight(): number;
}

/** Starts the actor side of this worker. Resolves once the router's data port has arrived. */
export function startActor<Req = unknown, Res = unknown>(options: ActorOptions<Req, Res>): Promise<Actor> {
  if (!parentPort) throw new Error('startActor must run in a worker thread');
  collectWhenQuiet();
  const data = workerData as ActorWorkerData<unknown>;
  const control = parentPort;
  return new Promise((resolvePort) => {
    const onPort = (msg: unknown) => {
      if (!msg || typeof msg !== 'object' || (msg as { type?: string }).type !== 'postactor:port') return;
      control.off('message', onPort);
      const port = (msg as { port: MessagePort }).port;
      resolvePort(bind(port, data, options));
      if (options.control) Comlink.expose(options.control, nodeEndpoint(control));
    };
    control.on('message', onPort);
  });
}

function bind<Req, Res>(port: MessagePort, data: ActorWorkerData<unknown>, options: ActorOptions<Req, Res>): Actor {
  const maxInFlight = options.maxInFlight ?? 1000;
  const waiting = new PendingReplies();
  const direct = new DirectChannels((frame) => port.postMessage(frame));

  /** A request, from the router or on a client's direct channel: the reply goes back there. */
  const serve = (from: MessagePort, id: number, body: unknown) => {
    Promise.resolve()
      .then(() => {
        if (!options.onRequest) throw new Error(`${data.service} takes no requests`);
        return options.onRequest(body as Req);
      })
      .then(
        (value) => from.postMessage({ k: 'res', id, ok: true, value } satisfies Frame),
        (err: Error) => from.postMessage({ k: 'res', id, ok: false, error: { code: 'ERROR', message: String(err?.message ?? err) } } satisfies Frame),
      );
  };

  port.on('message', (frame: Frame) => {
    if (direct.handle(frame)) return;
    switch (frame.k) {
      case 'res':
        waiting.settle(frame);
        return;
      case 'req':
        serve(port, frame.id, frame.body);
        return;
      case 'client': {
        // A client thread's direct channel (the master wired it at the client's first request).
        const channel = frame.port;
        channel.on('message', (f: Frame) => {
          if (f.k === 'req') serve(channel, f.id, f.body);
        });
        // This thread lives as long as the router's port: the channel does not keep it alive.
        channel.unref();
        return;
      }
      case 'msg':
        options.onMessage?.(frame.body);
        return;
    }
  });

  return {
    data,
    inFlight: () => waiting.size + direct.inFlight(),
    request<T>(to: string, body: unknown, transfer?: ArrayBuffer[], affinity?: string): Promise<T> {
      if (waiting.size + direct.inFlight() >= maxInFlight) return Promise.reject(new ServiceError('BUSY', `${data.service}: too many requests in flight`));
      const straight = direct.request<T>(to, body, transfer, affinity);
      if (straight) return straight;
      // The transferred buffers are named in the frame too, so the router passes them on
      // transferred instead of copying the body once more on its way to the service.
      return waiting.expect<T>((id) => port.postMessage((transfer && transfer.length ? { k: 'req', id, to, body, t: transfer } : { k: 'req', id, to, body }) satisfies Frame, transfer ?? []));
    },
    send(to: string, body: unknown): void {
      port.postMessage({ k: 'req', id: 0, to, body } satisfies Frame);
    },
  };
}
