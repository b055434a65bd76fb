/**
 * qshape — Postfix's qshape(1) table: recipient (or sender) domains by message age.
 *
 * Facts carried over from Postfix's qshape script:
 *   - bucket 0 is the total; buckets 1..b hold ages: age/(60·t) = m minutes-units; m < 1 →
 *     bucket 1, else 2 + ⌊log2 m⌋ (linear, -l: ⌊m + 1⌋), capped at b (the last is open-ended);
 *   - header labels: "T", then t, 2t, 4t … (linear: t, 2t, 3t …), the last one with "+";
 *   - each column is as wide as max(its label, the TOTAL count) + 1, at least 3; the domain
 *     column takes what is left of the terminal width (80 or -w), at least 18, right-justified;
 *     a longer domain shows as "+" and its last (width−1) characters, a parent domain as ".+"
 *     and its last (width−2);
 *   - only pending recipients count, one per recipient (or, with -s, one per message, the
 *     sender); a message with no pending recipient is not counted; addresses are lower-cased,
 *     the empty sender is "MAILER-DAEMON", the domain is what follows the last "@", ".." becomes
 *     ".", one leading and one trailing dot go;
 *   - -p adds parent domains (".example.com", never a top-level domain), shown only when they
 *     have at least min_subdomains (default 5) distinct child rows;
 *   - rows sorted by total, descending, then by name length (then, here, by name: Perl's order
 *     of equal keys is the hash's, i.e. arbitrary); TOTAL always comes first.
 */
import type { MessageMeta } from './types.js';

export interface QshapeOptions {
  /** -s: sender domains instead of recipient domains. */
  senders?: boolean;
  /** -p: parent domain rows. */
  parents?: boolean;
  /** -m: minimum subdomain count of a parent row (default 5). */
  minSubdomains?: number;
  /** -b: bucket count (default 10). */
  buckets?: number;
  /** -t: minutes of the first bucket (default 5). */
  bucketTime?: number;
  /** -l: linear buckets. */
  linear?: boolean;
  /** -w: terminal width (default 80; only larger values change it). */
  width?: number;
  /** Show only this many rows, TOTAL included (Postfix's -n on a terminal); 0 = all. */
  topRows?: number;
}

export interface QshapeRow {
  domain: string;
  /** counts[0] is the row total, counts[1..b] the buckets. */
  counts: number[];
}

export interface QshapeTable {
  /** Column labels: "T", then one per bucket. */
  labels: string[];
  rows: QshapeRow[];
}

/** The bucket (1..b) of a message that arrived at `arrivalMs`. */
export function bucketOf(arrivalMs: number, nowMs: number, bucketTime: number, buckets: number, linear: boolean): number {
  // Whole seconds, as the queue file's arrival time and Perl's time().
  const m = (Math.floor(nowMs / 1000) - Math.floor(arrivalMs / 1000)) / (60 * bucketTime);
  if (m < 1) return 1;
  const b = linear ? Math.floor(m + 1) : 2 + Math.floor(Math.log(m) / Math.log(2));
  return b < buckets ? b : buckets;
}

/** An address's domain as qshape counts it. */
export function qshapeDomain(address: string): string {
  let a = address.toLowerCase();
  if (a === '') a = 'MAILER-DAEMON';
  const at = a.lastIndexOf('@');
  if (at >= 0) a = a.slice(at + 1);
  a = a.replace(/\.\./g, '.');
  // Perl's s/\.?(.+?)\.?$/$1/: one leading and one trailing dot go, when something is left.
  const m = /\.?(.+?)\.?$/.exec(a);
  if (m) a = a.slice(0, m.index) + m[1]!;
  return a;
}

/** The parent of a domain or parent row (".b.example.com" → ".example.com"), or null at the top. */
function parentOf(d: string): string | null {
  const m = /^\.?[^.]+\.(.*\.)/.exec(d);
  if (!m) return null;
  return '.' + m[1]! + d.slice(m[0].length);
}

/** Builds the table from the messages of the selected queues. */
export function qshapeTable(messages: Iterable<MessageMeta>, nowMs: number, options: QshapeOptions = {}): QshapeTable {
  const buckets = options.buckets ?? 10;
  const tick = options.bucketTime ?? 5;
  const linear = options.linear === true;
  const minsub = options.minSubdomains ?? 5;
  const q = new Map<string, number[]>();
  const sub = new Map<string, number>();
  const row = (d: string) => {
    let r = q.get(d);
    if (!r) q.set(d, (r = new Array<number>(buckets + 1).fill(0)));
    return r;
  };
  const total = row('TOTAL');
  for (const meta of messages) {
    const pending = meta.recipients.filter((r) => !r.done);
    if (pending.length === 0) continue;
    const b = bucketOf(meta.arrival, nowMs, tick, buckets, linear);
    const addresses = options.senders ? [meta.sender] : pending.map((r) => r.address);
    for (const address of addresses) {
      total[0]!++;
      total[b]!++;
      let d: string | null = qshapeDomain(address);
      let isNew = false;
      // A row counts as a new child of its parent the first time it is counted.
      for (let guard = 0; d !== null && guard < 256; guard++) {
        const r = row(d);
        const old = ++r[0]! > 1;
        r[b]!++;
        if (isNew) sub.set(d, (sub.get(d) ?? 0) + 1);
        isNew = !old;
        if (!options.parents) break;
        d = parentOf(d);
      }
    }
  }
  const labels: string[] = [];
  for (let i = 0, t = 0; i <= buckets; i++) {
    if (i === 0) labels.push('T');
    else labels.push(i < buckets ? fmtNumber(t) : `${fmtNumber(t)}+`);
    if (i + 1 < buckets) t += t && !linear ? t : tick;
  }
  const rows = [...q.entries()]
    .filter(([d]) => d !== 'TOTAL' && !(d.startsWith('.') && (sub.get(d) ?? 0) < minsub))
    .map(([domain, counts]) => ({ domain, counts }))
    .sort((a, b) => b.counts[0]! - a.counts[0]! || a.domain.length - b.domain.length || (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
  rows.unshift({ domain: 'TOTAL', counts: total });
  if (options.topRows && options.topRows > 0) rows.splice(options.topRows);
  return { labels, rows };
}

/** Perl's number-to-string for the labels (-t may be fractional). */
function fmtNumber(n: number): string {
  return String(n);
}

/** The table as qshape prints it. */
export function formatQshape(table: QshapeTable, options: QshapeOptions = {}): string {
  const width = options.width !== undefined && options.width > 80 ? options.width : 80;
  const total = table.rows[0]?.counts ?? [];
  const widths = table.labels.map((label, i) => {
    let l = String(total[i] ?? 0).length;
    if (label.length >= l) l = label.length;
    return l > 2 ? l + 1 : 3;
  });
  let dw = width - widths.reduce((a, b) => a + b, 0);
  if (dw < 18) dw = 18;
  const line = (d: string, cells: string[]) => {
    let head: string;
    if (d.length > dw) head = d.startsWith('.') ? '.+' + d.slice(d.length - dw + 2) : '+' + d.slice(d.length - dw + 1);
    else head = d.padStart(dw, ' ');
    return head + cells.map((c, i) => c.padStart(widths[i]!, ' ')).join('') + '\n';
  };
  let out = line('', table.labels);
  for (const r of table.rows) out += line(r.domain, r.counts.map(String));
  return out;
}

/** --json: one object per row and line, the buckets keyed by their labels. */
export function formatQshapeJson(table: QshapeTable): string {
  return table.rows.map((r) => {
    const buckets: Record<string, number> = {};
    table.labels.slice(1).forEach((label, i) => (buckets[label] = r.counts[i + 1]!));
    return JSON.stringify({ domain: r.domain, total: r.counts[0], buckets }) + '\n';
  }).join('');
}
