/**
 * The client's name for logs and the Received header (smtpd_peername_lookup): reverse lookup
 * through getnameinfo (so /etc/hosts counts, as with Postfix), cached per address for a minute so
 * a client that opens a connection per message costs one lookup, not one per message.
 */
import { lookupService } from 'node:dns/promises';
import { isIP } from 'node:net';

const cache = new Map<string, { name: string; expires: number }>();
const TTL = 60_000;
const TIMEOUT = 2000;

export async function peerName(addr: string, lookup: boolean): Promise<string> {
  if (!lookup) return 'unknown';
  const now = Date.now();
  const hit = cache.get(addr);
  if (hit && hit.expires > now) return hit.name;
  let name = 'unknown';
  try {
    const result = await Promise.race([
      lookupService(addr.startsWith('::ffff:') ? addr.slice(7) : addr, 0),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), TIMEOUT).unref()),
    ]);
    if (result.hostname && !isIP(result.hostname) && /^[a-z0-9.-]+$/i.test(result.hostname)) name = result.hostname;
  } catch {
    // no name: "unknown", as Postfix logs it
  }
  if (cache.size > 10_000) cache.clear();
  cache.set(addr, { name, expires: now + TTL });
  return name;
}
