/**
 * A client thread's direct channels to the pool threads of the services it uses, as a Postfix
 * daemon connects to another's private/ socket: the master wires them (a `wire` frame on the
 * client's data port, one MessagePort per pool thread, ./pool.ts) and is then off the data path.
 * A request goes to the channel with the fewest requests in flight (or, with an affinity key,
 * to the channel the key hashes to); when even the least busy one holds the pool's spreadAt, the client asks the master for one more thread (`grow`) and goes on meanwhile.
 * Transferred buffers (message bodies) are transferred straight to the serving thread.
 *
 * A channel ends two ways. The thread says `bye` (max_idle, reload): the client answers `bye`,
 * sends nothing more there, and gets the replies still owed. Or the thread dies (a crash): the
 * port closes and every request still unanswered there fails with CRASHED, as a client of a
 * Postfix daemon that died sees its connection lost. A service with no channel (none wired yet,
 * or all gone) is reached through the master, which starts a thread and wires it.
 */
import type { MessagePort } from 'node:worker_threads';
import { PendingReplies, ServiceError, type Frame } from './wire.js';

interface Channel {
  port: MessagePort;
  pending: PendingReplies;
  /** The thread said bye: no new request goes there. */
  closing: boolean;
}

interface Service {
  channels: Channel[];
  spreadAt: number;
  /** Refused until then (the pool keeps crashing: service_throttle_time). */
  throttledUntil: number;
  /** When this client last asked for one more thread. */
  grewAt: number;
}

/** FNV-1a, 32 bits: a cheap, even spread of affinity keys over channels. */
function hash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** How often one client may ask the master for one more thread of a service. */
const GROW_EVERY_MS = 1000;

export class DirectChannels {
  private readonly services = new Map<string, Service>();
  private total = 0;

  /** `toMaster`: the client's data port to the master (grow requests). */
  constructor(private readonly toMaster: (frame: Frame) => void) {}

  /** Requests in flight on every channel. */
  inFlight(): number {
    return this.total;
  }

  /** Handles a frame from the master meant for the channels; false when it is not one. */
  handle(frame: Frame): boolean {
    if (frame.k === 'wire') {
      this.add(frame.service, frame.port, frame.spreadAt);
      return true;
    }
    if (frame.k === 'throttle') {
      this.service(frame.service).throttledUntil = frame.until;
      return true;
    }
    return false;
  }

  private service(name: string): Service {
    let s = this.services.get(name);
    if (!s) this.services.set(name, (s = { channels: [], spreadAt: 1, throttledUntil: 0, grewAt: 0 }));
    return s;
  }

  private add(name: string, port: MessagePort, spreadAt: number): void {
    const s = this.service(name);
    s.spreadAt = spreadAt;
    const ch: Channel = { port, pending: new PendingReplies(), closing: false };
    s.channels.push(ch);
    const drop = () => {
      const i = s.channels.indexOf(ch);
      if (i >= 0) s.channels.splice(i, 1);
    };
    port.on('message', (frame: Frame) => {
      if (frame.k === 'res') {
        if (ch.pending.settle(frame, `${name}: `)) this.total--;
      } else if (frame.k === 'bye') {
        ch.closing = true;
        drop();
        port.postMessage({ k: 'bye' } satisfies Frame);
      }
    });
    port.on('close', () => {
      drop();
      this.total -= ch.pending.failAll(new ServiceError('CRASHED', `${name}: worker exited`));
    });
  }

  /**
   * Sends a request on the least busy channel to `service`; null when there is none (the caller
   * goes through the master). A throttled service is refused here, without a hop.
   */
  request<T>(service: string, body: unknown, transfer?: ArrayBuffer[], affinity?: string): Promise<T> | null {
    const s = this.services.get(service);
    if (!s) return null;
    if (Date.now() < s.throttledUntil) return Promise.reject(new ServiceError('THROTTLED', `${service}: service is throttled after repeated crashes`));
    let best: Channel | null = null;
    for (const ch of s.channels) if (best === null || ch.pending.size < best.pending.size) best = ch;
    if (best === null) return null;
    if (best.pending.size >= s.spreadAt && Date.now() - s.grewAt >= GROW_EVERY_MS) {
      s.grewAt = Date.now();
      this.toMaster({ k: 'grow', service });
    }
    // Requests with the same affinity go to the same thread while the threads stay the same:
    // deliveries to one mailbox meet in one local(8) thread, whose helper writes them one after
    // another, instead of two threads' helpers taking turns at its lock (each wait is
    // deliver_lock_delay, a second).
    const ch = affinity === undefined || s.channels.length === 1 ? best : s.channels[hash(affinity) % s.channels.length]!;
    this.total++;
    return ch.pending.expect<T>((id) => ch.port.postMessage({ k: 'req', id, to: service, body } satisfies Frame, transfer ?? []));
  }
}
