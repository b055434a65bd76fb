/**
 * header_checks / body_checks (header_checks(5)): the action a table value names, and the
 * header-section work cleanup does per logical header — checks, address rewriting, Bcc removal.
 * Pure functions over strings; index.ts wires them to the tables and the queue.
 */

export type CheckAction =
  | { kind: 'dunno' }
  | { kind: 'reject'; dsn: string; text: string }
  | { kind: 'defer'; dsn: string; text: string }
  | { kind: 'warn'; text: string }
  | { kind: 'info'; text: string }
  | { kind: 'hold'; text: string }
  | { kind: 'discard'; text: string }
  | { kind: 'prepend'; text: string }
  | { kind: 'replace'; text: string }
  | { kind: 'ignore' }
  | { kind: 'redirect'; address: string }
  | { kind: 'filter'; nexthop: string }
  | { kind: 'bcc'; address: string }
  | { kind: 'unknown'; value: string };

const DSN = /^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/;

/** Splits "4.7.1 text" into its DSN and text; no DSN → the default. */
function withDsn(text: string, fallback: string, fallbackText: string): { dsn: string; text: string } {
  const m = DSN.exec(text);
  if (m) return { dsn: `${m[1]}.${m[2]}.${m[3]}`, text: text.slice(m[0].length) || fallbackText };
  return { dsn: fallback, text: text || fallbackText };
}

/** Parses a header_checks / body_checks table value ("ACTION optional text"). */
export function parseAction(value: string): CheckAction {
  const v = value.trim();
  const sp = v.search(/\s/);
  const word = (sp < 0 ? v : v.slice(0, sp)).toUpperCase();
  const text = sp < 0 ? '' : v.slice(sp).trim();
  switch (word) {
    case 'DUNNO': case 'OK': return { kind: 'dunno' };
    case 'REJECT': {
      const r = withDsn(text, '5.7.1', 'message content rejected');
      return { kind: 'reject', ...r };
    }
    case 'DEFER': {
      const r = withDsn(text, '4.7.1', 'Service unavailable - try again later');
      return { kind: 'defer', ...r };
    }
    case 'WARN': return { kind: 'warn', text };
    case 'INFO': return { kind: 'info', text };
    case 'HOLD': return { kind: 'hold', text };
    case 'DISCARD': return { kind: 'discard', text };
    case 'PREPEND': return text ? { kind: 'prepend', text } : { kind: 'unknown', value: v };
    case 'REPLACE': return text ? { kind: 'replace', text } : { kind: 'unknown', value: v };
    case 'IGNORE': return { kind: 'ignore' };
    case 'REDIRECT': return text ? { kind: 'redirect', address: text } : { kind: 'unknown', value: v };
    case 'FILTER': return text.includes(':') ? { kind: 'filter', nexthop: text } : { kind: 'unknown', value: v };
    case 'BCC': return text ? { kind: 'bcc', address: text } : { kind: 'unknown', value: v };
    default: return { kind: 'unknown', value: v };
  }
}

/** One logical header of the header section: its raw lines (with line ends), its lower-case name. */
export interface HeaderField {
  name: string;
  raw: string;
}

/**
 * Splits a header section (latin1 text, up to the blank line) into logical headers, folded
 * lines kept with their header. Text that does not start with a field name stays attached to the
 * previous header (cleanup's scan already decided where the header section ends).
 */
export function splitHeaderFields(section: string): HeaderField[] {
  const out: HeaderField[] = [];
  let pos = 0;
  while (pos < section.length) {
    let end = section.indexOf('\n', pos);
    end = end < 0 ? section.length : end + 1;
    const c = section[pos];
    if ((c === ' ' || c === '\t') && out.length > 0) {
      out[out.length - 1]!.raw += section.slice(pos, end);
    } else {
      const colon = section.indexOf(':', pos);
      const name = colon < 0 || colon >= end ? '' : section.slice(pos, colon).toLowerCase();
      out.push({ name, raw: section.slice(pos, end) });
    }
    pos = end;
  }
  return out;
}

/** Headers cleanup removes from every message (message_drop_headers). */
export const DROPPED_HEADERS: ReadonlySet<string> = new Set(['bcc', 'resent-bcc', 'return-path', 'content-length']);

export { RECIPIENT_HEADERS, rewriteAddressList, SENDER_HEADERS } from '../../src/address/header-addresses.js';
export { checkInput, checkTables, logForm } from '../../src/content/lookup.js';
