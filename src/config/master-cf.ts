// Parser for Postfix-style master.cf files (master(5) syntax): one service
// per logical line, 8 columns (service type private unpriv chroot wakeup
// maxproc command+args), '-' for a column's default, "-o name=value" and
// "-o { name = value }" parameter overrides. Also inet endpoint parsing.

import { ConfigError, configError } from './errors.js';
import { logicalLines } from './lines.js';
import { PARAM_NAME_RE } from './main-cf.js';
import { servicePort } from '../net/services.js';

export type ServiceType = 'inet' | 'unix' | 'unix-dgram' | 'fifo' | 'pass';

export interface MasterService {
  name: string;
  type: ServiceType;
  private: boolean;
  unpriv: boolean;
  chroot: boolean;
  /** Seconds between wake-up triggers; 0 = none. */
  wakeup: number;
  /** null when '-' (the caller applies default_process_limit); 0 = unlimited. */
  maxproc: number | null;
  command: string;
  args: string[];
  overrides: Record<string, string>;
  file: string;
  line: number;
}

const SERVICE_TYPES: readonly ServiceType[] = ['inet', 'unix', 'unix-dgram', 'fifo', 'pass'];
const FIELD_NAMES = ['service name', 'service type', 'private', 'unpriv', 'chroot', 'wakeup', 'maxproc', 'command'];

interface Token {
  text: string;
  braced: boolean;
}

/** Splits on whitespace; "{ ... }" (balanced) is one token. */
function tokenize(text: string): Token[] | string {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (i >= text.length) break;
    if (text[i] === '{') {
      let depth = 0;
      let j = i;
      for (; j < text.length; j++) {
        if (text[j] === '{') depth++;
        else if (text[j] === '}' && --depth === 0) break;
      }
      if (j >= text.length) return `missing '}' in "${text.slice(i)}"`;
      tokens.push({ text: text.slice(i + 1, j).trim(), braced: true });
      i = j + 1;
      continue;
    }
    let j = i;
    while (j < text.length && !/\s/.test(text[j]!)) j++;
    tokens.push({ text: text.slice(i, j), braced: false });
    i = j;
  }
  return tokens;
}

function parseBool(value: string, def: boolean): boolean | null {
  if (value === '-') return def;
  if (value === 'y') return true;
  if (value === 'n') return false;
  return null;
}

export function parseMasterCf(text: string, file: string): { services: MasterService[]; errors: ConfigError[] } {
  const { lines, errors } = logicalLines(text, file, 'service');
  const services: MasterService[] = [];
  const seen = new Map<string, number>();
  for (const { text: entry, line } of lines) {
    const fail = (what: string): void => {
      errors.push(configError(file, line, what));
    };
    const tokens = tokenize(entry);
    if (typeof tokens === 'string') {
      fail(tokens);
      continue;
    }
    if (tokens.length < 8) {
      fail(`missing "${FIELD_NAMES[tokens.length]}" field`);
      continue;
    }
    const col = tokens.slice(0, 7).map((t) => t.text);
    const [name, typeText, privText, unprivText, chrootText, wakeText, procText] = col as [
      string, string, string, string, string, string, string,
    ];
    if (!SERVICE_TYPES.includes(typeText as ServiceType)) {
      fail(`bad transport type: ${typeText}`);
      continue;
    }
    const type = typeText as ServiceType;
    const priv = parseBool(privText, true);
    const unpriv = parseBool(unprivText, true);
    const chroot = parseBool(chrootText, false);
    const bad = priv === null ? ['private', privText] : unpriv === null ? ['unpriv', unprivText]
      : chroot === null ? ['chroot', chrootText] : null;
    if (bad !== null) {
      fail(`field "${bad[0]}": bad value: "${bad[1]}"`);
      continue;
    }
    let wakeup = 0;
    if (wakeText !== '-') {
      const m = /^(\d+)\??$/.exec(wakeText);
      if (m === null) {
        fail(`bad wakeup time: ${wakeText}`);
        continue;
      }
      wakeup = Number(m[1]);
    }
    let maxproc: number | null = null;
    if (procText !== '-') {
      if (!/^\d+$/.test(procText)) {
        fail(`bad process count: ${procText}`);
        continue;
      }
      maxproc = Number(procText);
    }
    const command = tokens[7]!.text;
    if (command === '') {
      fail('missing "command" field');
      continue;
    }
    const args: string[] = [];
    const overrides: Record<string, string> = {};
    let argError: string | null = null;
    for (let k = 8; k < tokens.length && argError === null; k++) {
      const tok = tokens[k]!;
      let pair: string | null = null;
      let braced = false;
      if (!tok.braced && tok.text === '-o') {
        const next = tokens[++k];
        if (next === undefined) {
          argError = 'missing name=value after -o';
          break;
        }
        pair = next.text;
        braced = next.braced;
      } else if (!tok.braced && tok.text.startsWith('-o') && tok.text.length > 2) {
        pair = tok.text.slice(2);
      }
      if (pair === null) {
        args.push(tok.text);
        continue;
      }
      const eq = pair.indexOf('=');
      if (eq < 0) {
        argError = `missing '=' in -o ${braced ? `{ ${pair} }` : pair}`;
        break;
      }
      const pname = pair.slice(0, eq).trim();
      if (!PARAM_NAME_RE.test(pname)) {
        argError = `bad parameter name in -o: "${pname}"`;
        break;
      }
      overrides[pname] = braced ? pair.slice(eq + 1).trim() : pair.slice(eq + 1);
    }
    if (argError !== null) {
      fail(argError);
      continue;
    }
    const service: MasterService = {
      name, type, private: priv!, unpriv: unpriv!, chroot: chroot!, wakeup, maxproc,
      command, args, overrides, file, line,
    };
    if (type === 'inet') {
      const ep = parseInetName(name);
      if (typeof ep === 'string') {
        fail(ep);
        continue;
      }
    }
    const key = `${name}/${type}`;
    const first = seen.get(key);
    if (first !== undefined) {
      fail(`duplicate service name: ${key} (first defined at line ${first})`);
      continue;
    }
    seen.set(key, line);
    services.push(service);
  }
  return { services, errors };
}

/**
 * Listening address of an inet service: "port", "service", "host:port",
 * "[ipv6]:port" or "*:port". host null = no host part: the service listens on
 * every address of inet_interfaces (src/net/listen.ts).
 */
export function inetEndpoint(s: MasterService): { host: string | null; port: number } {
  const ep = parseInetName(s.name);
  if (typeof ep === 'string') throw configError(s.file, s.line, ep);
  return ep;
}

/** Parses an inet service name; returns the error text when it is bad. */
function parseInetName(name: string): { host: string | null; port: number } | string {
  let host: string | null = null;
  let portText = name;
  if (name.startsWith('[')) {
    const m = /^\[([0-9A-Fa-f:.]+(?:%[\w.-]+)?)\]:([^:]+)$/.exec(name);
    if (m === null || !m[1]!.includes(':')) return `bad inet service address: ${name}`;
    host = m[1]!;
    portText = m[2]!;
  } else {
    const colon = name.lastIndexOf(':');
    if (colon >= 0) {
      const h = name.slice(0, colon);
      portText = name.slice(colon + 1);
      if (h === '' || h.includes(':')) return `bad inet service address (IPv6 needs [brackets]): ${name}`;
      if (!/^[A-Za-z0-9.*_-]+$/.test(h)) return `bad inet service host: ${name}`;
      host = h === '*' ? null : h;
    }
  }
  // Numeric or symbolic port, resolved through /etc/services as Postfix's getaddrinfo() does.
  const port = servicePort(portText);
  if (port === null) return /^\d+$/.test(portText) ? `bad inet service port: ${name}` : `unknown service: ${portText}/tcp`;
  return { host, port };
}
