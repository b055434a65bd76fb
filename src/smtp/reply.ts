/**
 * SMTP reply lines (RFC 5321 section 4.2), shared by the smtp client and the sink.
 *
 * A reply is one or more lines "CCC-text" ending with "CCC text" (or a bare "CCC").
 * The enhanced status code (RFC 3463, "x.y.z ") is taken from the first line.
 * Parsing is by character codes, not regular expressions: it runs once per
 * reply line on the delivery hot path.
 */

export interface SmtpReply {
  code: number;
  /** RFC 3463 status such as "2.1.5", or null when the reply carries none. */
  enhanced: string | null;
  /** Full reply text without the code; lines of a multi-line reply joined with ' '. */
  text: string;
}

export interface ReplyLine {
  code: number;
  /** True for the last line of a reply ("250 ..." or "250"), false for "250-...". */
  last: boolean;
  /** The text after "CCC " or "CCC-". */
  text: string;
}

const ZERO = 48;

function isDigit(c: number): boolean {
  return c >= ZERO && c <= ZERO + 9;
}

/** Parses one reply line (without CRLF). Returns null when it is not a well-formed reply line. */
export function parseReplyLine(line: string): ReplyLine | null {
  if (line.length < 3) return null;
  const a = line.charCodeAt(0), b = line.charCodeAt(1), c = line.charCodeAt(2);
  if (!isDigit(a) || !isDigit(b) || !isDigit(c)) return null;
  const code = (a - ZERO) * 100 + (b - ZERO) * 10 + (c - ZERO);
  if (line.length === 3) return { code, last: true, text: '' };
  const sep = line.charCodeAt(3);
  if (sep === 45 /* - */) return { code, last: false, text: line.slice(4) };
  if (sep === 32 /* space */) return { code, last: true, text: line.slice(4) };
  return null;
}

/**
 * Length of a leading RFC 3463 status ("d.d{1,3}.d{1,3}") in `text` when it is
 * followed by a space or ends the text, else 0. The class digit must be 2, 4 or 5.
 */
export function enhancedStatusLength(text: string): number {
  const n = text.length;
  if (n < 5) return 0;
  const cls = text.charCodeAt(0);
  if (cls !== 50 && cls !== 52 && cls !== 53) return 0;
  if (text.charCodeAt(1) !== 46) return 0;
  let i = 2;
  for (let part = 0; part < 2; part++) {
    const start = i;
    while (i < n && i - start < 4 && isDigit(text.charCodeAt(i))) i++;
    const digits = i - start;
    if (digits < 1 || digits > 3) return 0;
    if (part === 0) {
      if (text.charCodeAt(i) !== 46) return 0;
      i++;
    }
  }
  if (i === n || text.charCodeAt(i) === 32) return i;
  return 0;
}

/** Splits "2.1.5 Ok" into enhanced "2.1.5" and text "Ok"; enhanced is null when absent. */
export function splitEnhanced(text: string): { enhanced: string | null; text: string } {
  const len = enhancedStatusLength(text);
  if (len === 0) return { enhanced: null, text };
  return { enhanced: text.slice(0, len), text: text.slice(len + 1) };
}

/**
 * Formats a reply for the wire, CRLF-terminated. A text containing '\n' becomes a
 * multi-line reply ("250-a", "250 b"); the enhanced code, if any, leads every line.
 */
export function formatReply(code: number, enhanced: string | null, text: string): string {
  const prefix = enhanced ? `${enhanced} ` : '';
  if (text.indexOf('\n') < 0) return `${code} ${prefix}${text}\r\n`;
  const lines = text.split('\n');
  let out = '';
  for (let i = 0; i < lines.length; i++) {
    out += `${code}${i === lines.length - 1 ? ' ' : '-'}${prefix}${lines[i]}\r\n`;
  }
  return out;
}

/** Postfix-style rendering of a reply for logs and bounce reasons: "550 5.1.1 User unknown". */
export function replyToString(reply: SmtpReply): string {
  return reply.enhanced ? `${reply.code} ${reply.enhanced} ${reply.text}` : `${reply.code} ${reply.text}`;
}
