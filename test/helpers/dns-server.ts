/**
 * A real DNS server on 127.0.0.1 (UDP, dns2) serving a zone given as a plain object,
 * for tests of the MX resolver. Names are matched case-insensitively without the
 * trailing dot. Unknown names get NXDOMAIN, names marked `servfail` get SERVFAIL,
 * known names without records of the asked type get an empty NOERROR (NODATA).
 * Every question is recorded in `queries`, so tests can tell a cache hit. The zone object is
 * read at each question, so a test may change records while the server runs.
 */

import dns2, { Packet } from 'dns2';

export interface ZoneEntry {
  MX?: { exchange: string; priority: number }[];
  A?: string[];
  AAAA?: string[];
  /** Name server host names. */
  NS?: string[];
  /** TXT records, each one string (split into 255-byte character strings on the wire). */
  TXT?: string[];
  servfail?: boolean;
}
export type Zone = Record<string, ZoneEntry>;

export interface TestDnsServer {
  port: number;
  /** "127.0.0.1:port", ready for NextHopResolver's servers option. */
  server: string;
  queries: { name: string; type: string }[];
  close(): Promise<void>;
}

// dns2's typings lack Packet.RCODE (the runtime has it): RFC 1035 values.
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;
type Answer = InstanceType<typeof Packet>['answers'][number];

const TYPE_NAMES: Record<number, string> = { [Packet.TYPE.A]: 'A', [Packet.TYPE.AAAA]: 'AAAA', [Packet.TYPE.MX]: 'MX', [Packet.TYPE.TXT]: 'TXT', [Packet.TYPE.NS]: 'NS' };

export async function startDnsServer(zone: Zone): Promise<TestDnsServer> {
  const find = (name: string): ZoneEntry | undefined =>
    Object.entries(zone).find(([k]) => k.toLowerCase().replace(/\.$/, '') === name)?.[1];
  const queries: { name: string; type: string }[] = [];
  const udp = dns2.createUDPServer((request, send) => {
    const response = Packet.createResponseFromRequest(request);
    response.header.ra = 1;
    for (const q of request.questions) {
      const name = q.name.toLowerCase().replace(/\.$/, '');
      const type = TYPE_NAMES[q.type] ?? String(q.type);
      queries.push({ name, type });
      const entry = find(name);
      if (!entry) { response.header.rcode = RCODE_NXDOMAIN; continue; }
      if (entry.servfail) { response.header.rcode = RCODE_SERVFAIL; continue; }
      if (type === 'MX') {
        for (const mx of entry.MX ?? []) {
          response.answers.push({ name: q.name, type: Packet.TYPE.MX, class: Packet.CLASS.IN, ttl: 60, exchange: mx.exchange, priority: mx.priority } as unknown as Answer);
        }
      } else if (type === 'NS') {
        for (const ns of entry.NS ?? []) {
          response.answers.push({ name: q.name, type: Packet.TYPE.NS, class: Packet.CLASS.IN, ttl: 60, ns } as unknown as Answer);
        }
      } else if (type === 'TXT') {
        for (const text of entry.TXT ?? []) {
          const data = text.match(/[^]{1,255}/g) ?? [''];
          response.answers.push({ name: q.name, type: Packet.TYPE.TXT, class: Packet.CLASS.IN, ttl: 60, data } as unknown as Answer);
        }
      } else if (type === 'A' || type === 'AAAA') {
        for (const address of entry[type] ?? []) {
          response.answers.push({ name: q.name, type: Packet.TYPE[type], class: Packet.CLASS.IN, ttl: 60, address } as unknown as Answer);
        }
      }
    }
    void send(response);
  });
  await udp.listen(0, '127.0.0.1');
  const port = udp.address().port;
  return {
    port,
    server: `127.0.0.1:${port}`,
    queries,
    close: () => new Promise<void>((resolve) => udp.close(() => resolve())),
  };
}
