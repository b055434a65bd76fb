/**
 * inet_protocols (Postfix's inet_proto.c): which address families the mail system uses for
 * listening and for its own addresses: "all" (IPv4 and IPv6), "ipv4", "ipv6", or a list
 * ("ipv4, ipv6"). Names are matched exactly, separated by blanks or commas; an unknown one is
 * Postfix's `unknown inet_protocols value "X" in "…"`.
 *
 * Postfix drops IPv6 with a warning when the kernel cannot create IPv6 sockets
 * ("inet_protocols: disabling IPv6 name/address support: …"); ipv6Usable() is that probe.
 */
import * as net from 'node:net';

export interface InetProtocols {
  ipv4: boolean;
  ipv6: boolean;
}

/** Parses inet_protocols; returns Postfix's error text when a name is unknown. */
export function parseInetProtocols(value: string): InetProtocols | string {
  const out: InetProtocols = { ipv4: false, ipv6: false };
  for (const name of value.split(/[\s,]+/).filter(Boolean)) {
    if (name === 'all') out.ipv4 = out.ipv6 = true;
    else if (name === 'ipv4') out.ipv4 = true;
    else if (name === 'ipv6') out.ipv6 = true;
    else return `unknown inet_protocols value "${name}" in "${value}"`;
  }
  return out;
}

/** Whether an address of this family (4 or 6) is allowed by inet_protocols. */
export function familyAllowed(p: InetProtocols, family: number): boolean {
  return family === 6 ? p.ipv6 : family === 4 ? p.ipv4 : false;
}

/**
 * Can this kernel make IPv6 sockets? Postfix asks socket(AF_INET6); Node cannot make a socket
 * without binding it, so bind an IPv6-only listener on [::] port 0 and close it at once.
 */
export function ipv6Usable(): Promise<{ ok: true } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, error: e.message }));
    s.listen({ host: '::', port: 0, ipv6Only: true, exclusive: true }, () => s.close(() => resolve({ ok: true })));
  });
}
