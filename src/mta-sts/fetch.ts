/**
 * Fetching an MTA-STS policy (RFC 8461 §3.3): GET https://mta-sts.<domain>/.well-known/mta-sts.txt
 * over HTTPS with the certificate verified for mta-sts.<domain>.
 *
 *   fetchStsPolicy(domain, options)  the policy text, or why there is none
 *
 * As the RFC asks: only a 200 answer with media type text/plain counts; redirects are not
 * followed (a 3xx is a failure); the body is limited (64 KiB by default) and the whole fetch
 * has a deadline. The host's address comes from the caller (the project's resolver), so the
 * name server Postactor is told to use (POSTACTOR_DNS_SERVERS) answers this lookup too; the
 * certificate is checked against the name, never the address. Trust: Node's CA store, or
 * `ca` when given (tests pass their own CA; NODE_EXTRA_CA_CERTS adds one process-wide).
 */

import * as https from 'node:https';

export interface FetchOptions {
  /** The addresses of mta-sts.<domain>, tried in order until one answers. */
  addresses: readonly string[];
  /** HTTPS port; 443 except in tests (POSTACTOR_MTA_STS_PORT). */
  port?: number;
  /** Trusted CAs (PEM); default: Node's. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Deadline for the whole fetch, ms (default 20000). */
  timeoutMs?: number;
  /** Largest body accepted, bytes (default 65536). */
  maxBytes?: number;
}

export type FetchResult = { ok: true; text: string } | { ok: false; error: string };

export const WELL_KNOWN = '/.well-known/mta-sts.txt';

/** The policy URL of a domain, as logged. */
export function policyUrl(domain: string, port = 443): string {
  return `https://mta-sts.${domain}${port === 443 ? '' : `:${port}`}${WELL_KNOWN}`;
}

export async function fetchStsPolicy(domain: string, o: FetchOptions): Promise<FetchResult> {
  if (o.addresses.length === 0) return { ok: false, error: `mta-sts.${domain} has no address` };
  let last: FetchResult = { ok: false, error: 'no address answered' };
  for (const addr of o.addresses) {
    last = await fetchFrom(domain, addr, o);
    // Only a failure to connect moves on to the next address; an answer is the answer.
    if (last.ok || !last.error.startsWith('connect ')) return last;
  }
  return last;
}

function fetchFrom(domain: string, addr: string, o: FetchOptions): Promise<FetchResult> {
  const name = `mta-sts.${domain}`;
  const port = o.port ?? 443;
  const maxBytes = o.maxBytes ?? 65536;
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: FetchResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const req = https.request({
      host: addr,
      port,
      path: WELL_KNOWN,
      method: 'GET',
      servername: name, // SNI and the name the certificate must carry
      headers: { host: port === 443 ? name : `${name}:${port}`, accept: 'text/plain', 'user-agent': 'Postactor MTA-STS' },
      agent: false,
      rejectUnauthorized: true,
      ...(o.ca !== undefined ? { ca: o.ca } : {}),
    }, (res) => {
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        res.destroy();
        return done({ ok: false, error: `HTTP status ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}` });
      }
      const type = String(res.headers['content-type'] ?? '');
      if (!/^text\/plain\s*(;|$)/i.test(type)) {
        res.destroy();
        return done({ ok: false, error: `media type "${type}" (must be text/plain)` });
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          res.destroy();
          done({ ok: false, error: `policy larger than ${maxBytes} bytes` });
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => done({ ok: true, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', (e) => done({ ok: false, error: e.message }));
    });
    const timer = setTimeout(() => {
      req.destroy();
      done({ ok: false, error: `timeout after ${o.timeoutMs ?? 20000} ms` });
    }, o.timeoutMs ?? 20000);
    req.on('error', (e: NodeJS.ErrnoException) => {
      const connect = e.code === 'ECONNREFUSED' || e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH' || e.code === 'ECONNRESET' && !req.socket?.bytesWritten;
      done({ ok: false, error: connect ? `connect to ${name}[${addr}]:${port}: ${e.message}` : e.message });
    });
    req.end();
  });
}
