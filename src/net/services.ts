/**
 * Service names → TCP ports, as Postfix finds them (known_tcp_ports.c, then getservbyname(3)):
 * first Postfix's known_tcp_ports (its default: lmtp=24, smtp=25, smtps=submissions=465,
 * submission=587, so mail names work without a services database), then /etc/services
 * ("name port/proto aliases… # comment"), names and aliases alike. A name in neither is
 * "unknown service: NAME/tcp". A master.cf inet service written `submission inet …` or a
 * nexthop `host:smtp` resolves here.
 *
 * known_tcp_ports is Postfix's built-in default here; a main.cf setting of it is not read.
 */
// Not `import … from 'node:fs'`: an ES module import of node:fs builds its namespace, which loads
// fs/promises and the streams (some 30 internal modules, milliseconds at every start of sendmail
// and mailq, which import this file (via master.cf)). getBuiltinModule returns the already loaded module.
const { readFileSync } = process.getBuiltinModule('node:fs');

export const SERVICES_FILE = '/etc/services';

/** Postfix's default known_tcp_ports, consulted before the services file. */
const KNOWN_TCP_PORTS: Readonly<Record<string, number>> = Object.freeze({
  lmtp: 24,
  smtp: 25,
  smtps: 465,
  submissions: 465,
  submission: 587,
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
  if (proto === 'tcp' && Object.hasOwn(KNOWN_TCP_PORTS, name)) return KNOWN_TCP_PORTS[name]!;
  return table(file)?.get(`${name}/${proto}`) ?? null;
}
