// cidr:/path — Postfix CIDR tables (cidr_table(5)):
//   network/prefix result     IPv4 or IPv6 (IPv6 may be written [addr]/prefix)
//   address result            a single host
//   !network/prefix result    matches addresses OUTSIDE the network (Postfix >= 3.2)
//   if network/prefix  ...  endif   (and "if !network/prefix"; nests; Postfix >= 3.2)
// First match in file order wins. Keys that are not IP addresses never match
// (not even negated rules). IPv4 keys only match IPv4 rules, IPv6 keys only
// IPv6 rules (so ::ffff:1.2.3.4 does not match 1.2.3.0/24), as with Postfix.
// Unlike Postfix (which skips such a rule with a warning), a malformed rule
// — bad address, bad prefix length, host bits set after the prefix, missing
// result, unbalanced if/endif — rejects the table with TableError file:line.

import net from 'node:net';

import ipaddr from 'ipaddr.js';

import { logicalLines } from './lines.js';
import { ReloadingFileTable } from './texthash.js';
import { NOT_FOUND, found, tableError, type InfoTable, type LookupResult } from './types.js';

interface Net {
  bytes: number[];
  prefix: number;
  negate: boolean;
}

interface Rule { type: 'rule'; net: Net; result: string }
interface IfBlock { type: 'if'; net: Net; body: Node[]; line: number }
type Node = Rule | IfBlock;

/** An IP address as bytes (4 or 16), or null. Accepts [addr] for IPv6. */
export function ipBytes(text: string): number[] | null {
  let s = text;
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (net.isIPv4(s)) return s.split('.').map(Number);
  if (net.isIPv6(s) && !s.includes('%')) return ipaddr.IPv6.parse(s).toByteArray();
  return null;
}

function inNet(n: Net, addr: number[]): boolean {
  if (addr.length !== n.bytes.length) return false;
  let bits = n.prefix;
  for (let i = 0; i < addr.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((addr[i]! & mask) !== n.bytes[i]) return false;
  }
  return true;
}

function parseNet(file: string, line: number, text: string): Net {
  let s = text;
  let negate = false;
  if (s.startsWith('!')) { negate = true; s = s.slice(1).trim(); }
  const slash = s.lastIndexOf('/');
  const addrText = slash >= 0 ? s.slice(0, slash) : s;
  const bytes = ipBytes(addrText);
  if (bytes === null) throw tableError(file, line, `bad address pattern: "${s}"`);
  const max = bytes.length * 8;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d+$/.test(p) || Number(p) > max) throw tableError(file, line, `bad mask length in "${s}"`);
    prefix = Number(p);
  }
  const n: Net = { bytes, prefix, negate: false };
  const masked = bytes.map((b, i) => {
    const bits = prefix - i * 8;
    return bits >= 8 ? b : bits <= 0 ? 0 : b & ((0xff << (8 - bits)) & 0xff);
  });
  if (masked.some((b, i) => b !== bytes[i])) {
    const fixed = bytes.length === 4 ? masked.join('.') : ipaddr.fromByteArray(masked).toString();
    throw tableError(file, line, `non-null host address bits in "${s}", perhaps you should use "${fixed}/${prefix}" instead`);
  }
  n.negate = negate;
  return n;
}

function parseCidr(file: string, text: string): Node[] {
  const top: Node[] = [];
  const stack: { block: IfBlock | null; body: Node[] }[] = [{ block: null, body: top }];
  for (const l of logicalLines(text)) {
    const body = stack[stack.length - 1]!.body;
    if (/^endif\b/i.test(l.text)) {
      if (l.text.length > 5) throw tableError(file, l.line, `extra text after ENDIF: "${l.text}"`);
      if (stack.length === 1) throw tableError(file, l.line, 'ENDIF without matching IF');
      stack.pop();
      continue;
    }
    const ifm = /^if\s+(!?\s*\S+)(.*)$/i.exec(l.text);
    if (ifm !== null) {
      if (ifm[2]!.trim() !== '') throw tableError(file, l.line, `extra text after IF statement: "${ifm[2]!.trim()}"`);
      const block: IfBlock = { type: 'if', net: parseNet(file, l.line, ifm[1]!), body: [], line: l.line };
      body.push(block);
      stack.push({ block, body: block.body });
      continue;
    }
    const m = /^(!?\s*[^\s!]+)\s*(.*)$/.exec(l.text)!;
    const n = parseNet(file, l.line, m[1]!);
    if (m[2] === '') throw tableError(file, l.line, 'no lookup result');
    body.push({ type: 'rule', net: n, result: m[2]! });
  }
  if (stack.length > 1) throw tableError(file, stack[stack.length - 1]!.block!.line, 'IF has no matching ENDIF');
  return top;
}

function evaluate(nodes: Node[], addr: number[]): string | null {
  for (const n of nodes) {
    // A rule of the other address family never matches, negated or not (as with Postfix).
    if (addr.length !== n.net.bytes.length || inNet(n.net, addr) === n.net.negate) continue;
    if (n.type === 'rule') return n.result;
    const r = evaluate(n.body, addr);
    if (r !== null) return r;
  }
  return null;
}

export class CidrTable extends ReloadingFileTable<Node[]> implements InfoTable {
  readonly kind = 'pattern';
  readonly foldsCase = false;
  readonly warnings: readonly string[] = [];

  constructor(readonly spec: string, file: string) {
    super(file);
    this.load();
  }

  protected parse(text: string): Node[] {
    return parseCidr(this.file, text);
  }

  lookup(key: string): LookupResult {
    const nodes = this.current();
    // Keys are bare addresses: "[1.2.3.4]" does not match (as with Postfix).
    const addr = key.startsWith('[') ? null : ipBytes(key);
    if (addr === null) return NOT_FOUND;
    const r = evaluate(nodes, addr);
    return r === null ? NOT_FOUND : found(r);
  }
}
