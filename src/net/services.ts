/**
 * Service names → TCP ports, as Postfix finds them: getservbyname(3), i.e. /etc/services
 * ("name port/proto aliases… # comment"), names and aliases alike. A master.cf inet service
 * written `submission inet …` or a nexthop `host:smtp` resolves here.
 *
 * /etc/services is authoritative when it can be read, as with Postfix (a name it lacks is
 * "unknown service: NAME/tcp"). Only on a system without the file (a bare container without
 * netbase) do the few mail service names Postfix's own files use fall back to their
 * well-known ports, so the embedded and stock master.cf lines still start.
 */
import { readFileSync } from 'node:fs';

export const SERVICES_FILE = '/etc/services';

/** Used only when /etc/services cannot be read. */
const FALLBACK_TCP: Readonly<Record<string, number>> = Object.freeze({
  smtp: 25,
  submission: 587,
  submissions: 465,
  smtps: 465,
  lmtp: 24,
  qmtp: 209,
  qmqp: 628,
});

const cache = new Map<string, Map<string, number> | null>();

/** name/proto → port from one services file; null when the file cannot be read. */
function table(file: string): Map<string, number> | null {
  if (cache.has(file)) return cache.get(file)!;
  let text: string | null = null;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    text = null;
  }
  let map: Map<string, number> | null = null;
  if (text !== null) {
    map = new Map();
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) continue;
      const [name, portProto, ...aliases] = line.split(/\s+/);
      const m = /^(\d+)\/(\w+)$/.exec(portProto ?? '');
      if (!name || !m) continue;
      const port = Number(m[1]);
      // The first entry wins, as getservbyname reads the file top down.
      for (const n of [name, ...aliases]) if (!map.has(`${n}/${m[2]}`)) map.set(`${n}/${m[2]}`, port);
    }
  }
  cache.set(file, map);
  return map;
}

/**
 * The port of a numeric or symbolic service: "25" → 25, "submission" → 587. Null for an
 * unknown name or a number out of range (the caller words the error: "unknown service: NAME/tcp").
 */
export function servicePort(name: string, proto = 'tcp', file = SERVICES_FILE): number | null {
  if (/^\d+$/.test(name)) {
    const n = Number(name);
    return n >= 1 && n <= 65535 ? n : null;
  }
  const t = table(file);
  if (t === null) return proto === 'tcp' && Object.hasOwn(FALLBACK_TCP, name) ? FALLBACK_TCP[name]! : null;
  return t.get(`${name}/${proto}`) ?? null;
}
