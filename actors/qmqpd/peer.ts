/**
 * The QMQP client's name, as Postfix's qmqpd_peer.c finds it: the reverse name of its address,
 * kept only when that name resolves back to the address (forward-confirmed); otherwise
 * "unknown", with Postfix's warning. qmqpd_authorized_clients may name hosts, so a PTR record
 * alone must not authorize anyone.
 */
import { lookup } from 'node:dns/promises';
import { peerName } from '../../src/net/peername.js';

const TIMEOUT = 2000;

export async function verifiedPeerName(addr: string, warn: (text: string) => void): Promise<string> {
  const name = await peerName(addr, true);
  if (name === 'unknown') return name;
  try {
    const found = await Promise.race([
      lookup(name, { all: true }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), TIMEOUT).unref()),
    ]);
    if (found.some((a) => a.address === addr)) return name;
    warn(`hostname ${name} does not resolve to address ${addr}`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    warn(`hostname ${name} does not resolve to address ${addr}: ${code === 'ENOTFOUND' ? 'Name or service not known' : (err as Error).message}`);
  }
  return 'unknown';
}
