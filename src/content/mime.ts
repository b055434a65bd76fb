/**
 * The MIME structure of a message as Postfix's mime_state(3) sees it, for the content checks:
 * which header blocks are the primary headers, which follow a multipart boundary
 * (MIME_HDR_MULTIPART: mime_header_checks) and which start an attached message/rfc822 or
 * message/global (MIME_HDR_NESTED: nested_header_checks), and which lines are body lines
 * (body_checks, with their offset in their body segment for body_checks_size_limit).
 *
 * One pass, no decoding, and as forgiving as Postfix's parser: a line that is neither a header
 * nor a blank line ends a part's headers; boundaries are matched as prefixes ("--" + boundary,
 * the boundary cut at mime_boundary_length_limit); mime_nesting_limit caps the boundary stack.
 * Boundaries are recognised in body state only, so a boundary line inside headers first ends
 * them, then counts — as in Postfix.
 */

/** Headers that are MIME headers wherever they are (Postfix's HDR_OPT_MIME in header_opts.c). */
export const MIME_HEADERS: ReadonlySet<string> = new Set([
  'content-description', 'content-disposition', 'content-id', 'content-transfer-encoding',
  'content-type', 'mime-version',
]);

export type HeaderClass = 'primary' | 'multipart' | 'nested';

/** One event of the walk: a logical header (with its folded lines) or a body line. */
export type MimeEvent =
  | { kind: 'header'; cls: HeaderClass; name: string; start: number; end: number }
  | { kind: 'line'; start: number; end: number; offset: number };

type Ctype = 'text' | 'message' | 'multipart' | 'other';
type Stype = 'plain' | 'rfc822' | 'global' | 'partial' | 'external-body' | 'other';

interface Frame { boundary: string; defCtype: Ctype; defStype: Stype }

export interface MimeLimits {
  /** mime_nesting_limit. */
  nesting: number;
  /** mime_boundary_length_limit. */
  boundaryLength: number;
}

/** RFC 2045 tspecials: they end a token. */
const TSPECIALS = '()<>@,;:\\"/[]?=';

type Token = { type: 'token'; value: string } | { type: 'special'; value: string };

/**
 * Splits a header value into tokens up to `stop` (as Postfix's header_token()): comments
 * skipped, quoted strings become tokens. Returns the tokens and where reading stopped.
 */
function tokens(s: string, pos: number, stop: string): { toks: Token[]; pos: number; end: boolean } {
  const toks: Token[] = [];
  while (pos < s.length) {
    const c = s[pos]!;
    if (c === stop) return { toks, pos: pos + 1, end: false };
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') { pos++; continue; }
    if (c === '(') {
      let depth = 0;
      for (; pos < s.length; pos++) {
        if (s[pos] === '\\') { pos++; continue; }
        if (s[pos] === '(') depth++;
        else if (s[pos] === ')' && --depth === 0) { pos++; break; }
      }
      continue;
    }
    if (c === '"') {
      let v = '';
      for (pos++; pos < s.length && s[pos] !== '"'; pos++) {
        if (s[pos] === '\\' && pos + 1 < s.length) pos++;
        v += s[pos];
      }
      pos++;
      toks.push({ type: 'token', value: v });
      continue;
    }
    if (TSPECIALS.includes(c)) {
      toks.push({ type: 'special', value: c });
      pos++;
      continue;
    }
    let j = pos;
    while (j < s.length && !TSPECIALS.includes(s[j]!) && !/[\s\x00-\x1f\x7f]/.test(s[j]!)) j++;
    if (j === pos) { pos++; continue; }
    toks.push({ type: 'token', value: s.slice(pos, j) });
    pos = j;
  }
  return { toks, pos, end: true };
}

const is = (t: Token | undefined, word: string) => t?.type === 'token' && t.value.toLowerCase() === word;

/** What a Content-Type header value says: the type and subtype, and its boundary parameters. */
export function parseContentType(value: string): { ctype: Ctype; stype: Stype; boundaries: string[]; digest: boolean } | null {
  let r = tokens(value, 0, ';');
  const [t0, t1, t2] = r.toks;
  if (!t0) return null;
  const slash = t1?.type === 'special' && t1.value === '/';
  if (is(t0, 'text')) return { ctype: 'text', stype: slash && is(t2, 'plain') ? 'plain' : 'other', boundaries: [], digest: false };
  if (is(t0, 'message')) {
    let stype: Stype = 'other';
    if (slash && t2?.type === 'token') {
      const sub = t2.value.toLowerCase();
      if (sub === 'rfc822' || sub === 'partial' || sub === 'external-body' || sub === 'global') stype = sub;
    }
    return { ctype: 'message', stype, boundaries: [], digest: false };
  }
  if (is(t0, 'multipart')) {
    // multipart/digest parts default to message/rfc822, other multiparts' to text/plain.
    const digest = slash && is(t2, 'digest');
    const boundaries: string[] = [];
    // Every boundary parameter counts (several are illegal, and could hide content).
    while (!r.end) {
      r = tokens(value, r.pos, ';');
      const [p0, p1, p2] = r.toks;
      if (r.toks.length >= 3 && is(p0, 'boundary') && p1?.type === 'special' && p1.value === '=' && p2) boundaries.push(p2.value);
    }
    return { ctype: 'multipart', stype: 'other', boundaries, digest };
  }
  return { ctype: 'other', stype: 'other', boundaries: [], digest: false };
}

/** Postfix's is_header_buf(): a field name (printable ASCII, blanks before the colon allowed) and ':'. */
export function headerNameLength(line: string): number {
  let n = 0;
  let state = 0; // 0 start, 1 in name, 2 blanks after the name
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 0x3a) return state > 0 ? n : 0;
    if (c === 0x20 || c === 0x09) {
      if (state === 0) return 0;
      state = 2;
      continue;
    }
    if (c >= 0x80 || c < 0x20 || c === 0x7f || state === 2) return 0;
    state = 1;
    n++;
  }
  return 0;
}

/**
 * Walks `buf` (a whole message, headers first) and yields its headers and body lines. With
 * `disabled` (disable_mime_input_processing) only the primary headers are headers; the rest is
 * one body.
 */
export function* walkMime(buf: Uint8Array, limits: MimeLimits, disabled: boolean): Generator<MimeEvent> {
  const text = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('latin1');
  let state: 'headers' | 'body' = 'headers';
  let cls: HeaderClass = 'primary';
  let ctype: Ctype = 'text';
  let stype: Stype = 'plain';
  const stack: Frame[] = [];
  let pending: { start: number; end: number; name: string } | null = null;
  let offset = 0;

  const contentType = (start: number, end: number) => {
    const raw = text.slice(start, end);
    const parsed = parseContentType(raw.slice(raw.indexOf(':') + 1));
    if (!parsed) return;
    ctype = parsed.ctype;
    stype = parsed.stype;
    for (const b of parsed.boundaries) {
      const defCtype: Ctype = parsed.digest ? 'message' : 'text';
      const defStype: Stype = parsed.digest ? 'rfc822' : 'plain';
      // Postfix starts its nesting level at -1 and refuses a push above the limit.
      if (stack.length - 1 > limits.nesting) continue;
      stack.unshift({ boundary: b.slice(0, limits.boundaryLength), defCtype, defStype });
    }
  };
  const flush = function* (): Generator<MimeEvent> {
    if (!pending) return;
    const p = pending;
    pending = null;
    if (!disabled && p.name === 'content-type') contentType(p.start, p.end);
    yield { kind: 'header', cls, name: p.name, start: p.start, end: p.end };
  };

  let pos = 0;
  while (pos < text.length) {
    let nl = text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl + 1;
    if (nl < 0) nl = text.length;
    const line = text.slice(pos, nl > pos && text[nl - 1] === '\r' ? nl - 1 : nl);

    if (state === 'headers') {
      if (pending && (line[0] === ' ' || line[0] === '\t')) {
        pending.end = end;
        pos = end;
        continue;
      }
      yield* flush();
      const n = headerNameLength(line);
      if (n > 0) {
        pending = { start: pos, end, name: line.slice(0, n).toLowerCase() };
        pos = end;
        continue;
      }
      // The end of a header block: a blank line, or anything else (which then counts as body).
      state = 'body';
      if (line.length === 0) {
        offset = 0;
        if (disabled) {
          // Only the primary headers are parsed.
        } else if (ctype === 'message' && (stype === 'rfc822' || stype === 'global')) {
          state = 'headers';
          cls = 'nested';
          ctype = 'text';
          stype = 'plain';
        } else if (ctype === 'multipart') {
          ctype = 'other';
          stype = 'other';
        }
      }
      // The same line falls through to the body state, as in mime_state_update().
    }

    if (!disabled && stack.length > 0 && line.length > 2 && line.startsWith('--')) {
      for (let i = 0; i < stack.length; i++) {
        const f = stack[i]!;
        if (!line.startsWith(f.boundary, 2)) continue;
        stack.splice(0, i);
        if (line.startsWith('--', 2 + f.boundary.length)) {
          stack.shift();
          state = 'body';
          ctype = 'other';
          stype = 'other';
        } else {
          state = 'headers';
          cls = 'multipart';
          ctype = f.defCtype;
          stype = f.defStype;
        }
        break;
      }
    }
    yield { kind: 'line', start: pos, end, offset };
    offset += line.length + 1;
    pos = end;
  }
  yield* flush();
}
