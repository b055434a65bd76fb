/**
 * LMTP nexthops (Postfix lmtp(8)): "unix:/path" (or a path relative to $queue_directory, as in
 * "lmtp:unix:private/dovecot-lmtp"), "inet:host:port", "inet:[host]:port", "[host]:port",
 * "host:port" or "host"; the default port is 24 ("lmtp"). LMTP looks up no MX records: a name
 * is looked up as a host (as if bracketed).
 */
import { isAbsolute, resolve } from 'node:path';
import { parseNexthop } from '../../src/dns/nexthop.js';

export type LmtpTarget =
  | { kind: 'unix'; path: string; display: string }
  | { kind: 'inet'; name: string; port: number; bracketed: string };

export function parseLmtpNexthop(nexthop: string, queueDirectory: string): LmtpTarget | string {
  const s = nexthop.trim();
  if (s.startsWith('unix:')) {
    const p = s.slice(5);
    if (p.length === 0) return `bad LMTP destination "${nexthop}": empty socket path`;
    return { kind: 'unix', path: isAbsolute(p) ? p : resolve(queueDirectory, p), display: p };
  }
  const rest = s.startsWith('inet:') ? s.slice(5) : s;
  const n = parseNexthop(rest, 24);
  if (!n) return `bad LMTP destination "${nexthop}"`;
  const host = n.ipVersion === 6 ? `ipv6:${n.name}` : n.name;
  return { kind: 'inet', name: n.name, port: n.port, bracketed: `[${host}]:${n.port}` };
}
