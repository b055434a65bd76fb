/**
 * The smtp and lmtp clients' TLS session cache (Postfix's smtp_tls_session_cache_database, which
 * tlsmgr shares between all smtp processes): a session a server gave one smtp thread is offered
 * by every smtp thread of this server on its next handshake with the same peer under the same
 * policy, so that handshake is a resumption. The threads share it over a BroadcastChannel;
 * nothing is written to the database file the parameter names (sessions do not survive a
 * restart). As in Postfix, an empty smtp_tls_session_cache_database means no cache at all, and
 * entries expire after smtp_tls_session_cache_timeout.
 */
import { BroadcastChannel } from 'node:worker_threads';

type Update = { key: string; session: Uint8Array; expires: number } | { key: string; drop: true };

export class TlsSessionCache {
  private readonly map = new Map<string, { session: Buffer; expires: number }>();
  private readonly channel: BroadcastChannel;

  /** prefix: "smtp" or "lmtp" (their caches are separate, as Postfix's); ttlMs > 0. */
  constructor(prefix: string, private readonly ttlMs: number) {
    this.channel = new BroadcastChannel(`postactor:${prefix}-tls-sessions`);
    this.channel.onmessage = (ev) => {
      const u = (ev as unknown as { data: Update }).data;
      if ('drop' in u) this.map.delete(u.key);
      else this.map.set(u.key, { session: Buffer.from(u.session), expires: u.expires });
    };
    this.channel.unref(); // the cache never keeps a worker alive
  }

  get(key: string): Buffer | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    if (e.expires <= Date.now()) {
      this.map.delete(key);
      return undefined;
    }
    return e.session;
  }

  set(key: string, session: Buffer): void {
    const expires = Date.now() + this.ttlMs;
    this.map.set(key, { session, expires });
    this.channel.postMessage({ key, session: new Uint8Array(session), expires } satisfies Update);
  }

  delete(key: string): void {
    if (!this.map.delete(key)) return;
    this.channel.postMessage({ key, drop: true } satisfies Update);
  }

  close(): void {
    this.channel.close();
  }
}
