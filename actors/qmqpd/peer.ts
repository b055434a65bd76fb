/**
 * The QMQP client's name, as Postfix's qmqpd_peer.c finds it: forward-confirmed, or "unknown"
 * with Postfix's warning (src/net/peername.ts). qmqpd_authorized_clients may name hosts, so a
 * PTR record alone must not authorize anyone.
 */
import { peerIdentity } from '../../src/net/peername.js';

export async function verifiedPeerName(addr: string, warn: (text: string) => void): Promise<string> {
  const id = await peerIdentity(addr, true);
  if (id.warning) warn(id.warning);
  return id.name;
}
