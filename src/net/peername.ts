/**
 * The client's names (smtpd_peername_lookup), as Postfix's smtpd_peer.c and qmqpd_peer.c find
 * them: the reverse name of the address through getnameinfo (so /etc/hosts counts), and the
 * client name, which is that reverse name only when it resolves back to the address
 * (forward-confirmed); otherwise "unknown", with Postfix's warning. A PTR record alone is
 * whatever the owner of the address's reverse zone says, so access checks by name
 * (check_client_access, qmqpd_authorized_clients) must only ever see the confirmed name; the
 * unconfirmed one is the "reverse" name (check_reverse_client_hostname_access,
 * reject_unknown_reverse_client_hostname). Cached per address for a minute, so that a client
 * that opens a connection per message costs one lookup, not one per message.
 */
import { lookup, lookupService } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** Postfix's SMTPD_PEER_CODE_*: found; temporary failure; no name; name does not resolve back. */
export type PeerStatus = 'ok' | 'temp' | 'perm' | 'forged';

export interface PeerIdentity {
  /** The forward-confirmed name, or "unknown". */
  name: string;
  nameStatus: PeerStatus;
  /** The reverse (PTR) name, or "unknown". */
  reverseName: string;
  reverseStatus: PeerStatus;
  /** Postfix's "hostname X does not resolve to address A[: why]", to be logged per connection. */
  warning: string | null;
}

const cache = new Map<string, { id: PeerIdentity; expires: number }>();
const TTL = 60_000;
const TIMEOUT = 2000;

const UNKNOWN: PeerIdentity = { name: 'unknown', nameStatus: 'perm', reverseName: 'unknown', reverseStatus: 'perm', warning: null };

function timeout<T>(p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'EAI_AGAIN' })), TIMEOUT).unref())]);
}

/** getaddrinfo's failures that may pass (Postfix's TEMP_AI_ERROR). */
function temporary(code: string | undefined): boolean {
  return code === 'EAI_AGAIN' || code === 'ETIMEOUT' || code === 'ESERVFAIL' || code === 'EAI_MEMORY' || code === 'EAI_SYSTEM';
}

/** getaddrinfo's words for a failed forward lookup (glibc's gai_strerror). */
function gaiText(code: string | undefined): string {
  if (code === 'ENOTFOUND') return 'Name or service not known';
  if (code === 'ENODATA') return 'No address associated with hostname';
  if (temporary(code)) return 'Temporary failure in name resolution';
  return 'Non-recoverable failure in name resolution';
}

export async function peerIdentity(address: string, lookupNames: boolean): Promise<PeerIdentity> {
  if (!lookupNames) return UNKNOWN;
  const addr = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  const now = Date.now();
  const hit = cache.get(addr);
  if (hit && hit.expires > now) return hit.id;
  const id = await find(addr);
  if (cache.size > 10_000) cache.clear();
  cache.set(addr, { id, expires: now + TTL });
  return id;
}

async function find(addr: string): Promise<PeerIdentity> {
  let reverse: string;
  try {
    reverse = (await timeout(lookupService(addr, 0))).hostname;
  } catch (e) {
    const status: PeerStatus = temporary((e as NodeJS.ErrnoException).code) ? 'temp' : 'perm';
    return { name: 'unknown', nameStatus: status, reverseName: 'unknown', reverseStatus: status, warning: null };
  }
  // getnameinfo gives the address back when there is no name; a numeric or malformed name is none.
  if (!reverse || isIP(reverse) || !/^[a-z0-9.-]+$/i.test(reverse)) return UNKNOWN;
  const family = isIP(addr);
  try {
    const forward = await timeout(lookup(reverse, { all: true, family }));
    const mine = new BlockList();
    mine.addAddress(addr, family === 6 ? 'ipv6' : 'ipv4');
    if (forward.some((f) => f.family === family && mine.check(f.address, family === 6 ? 'ipv6' : 'ipv4'))) {
      return { name: reverse, nameStatus: 'ok', reverseName: reverse, reverseStatus: 'ok', warning: null };
    }
    return { name: 'unknown', nameStatus: 'forged', reverseName: reverse, reverseStatus: 'ok', warning: `hostname ${reverse} does not resolve to address ${addr}` };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      name: 'unknown', nameStatus: temporary(code) ? 'temp' : 'forged', reverseName: reverse, reverseStatus: 'ok',
      warning: `hostname ${reverse} does not resolve to address ${addr}: ${gaiText(code)}`,
    };
  }
}

/** The forward-confirmed name alone, for log lines outside a session. */
export async function peerName(addr: string, lookupNames: boolean): Promise<string> {
  return (await peerIdentity(addr, lookupNames)).name;
}
