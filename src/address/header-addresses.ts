/**
 * The address headers of a message and the rewriting of their addresses, shared by cleanup
 * (canonical maps, masquerading: Postfix's cleanup_rewrite) and the smtp client
 * (smtp_generic_maps: smtp_map11). Postfix's header_opts classes: sender and recipient headers.
 */

/** Header classes of the address headers cleanup rewrites (Postfix's header_opts). */
export const SENDER_HEADERS: ReadonlySet<string> = new Set(['from', 'sender', 'reply-to', 'errors-to', 'return-receipt-to', 'resent-from', 'resent-sender', 'resent-reply-to']);
export const RECIPIENT_HEADERS: ReadonlySet<string> = new Set(['to', 'cc', 'bcc', 'apparently-to', 'resent-to', 'resent-cc', 'resent-bcc']);

/**
 * Rewrites every address of an address-list header value (RFC 5322 mailbox lists and groups:
 * "Name <a@b>", "a@b (comment)", "group: a@b, c@d;"). Only the address text changes; phrases,
 * comments, spacing and folding stay as they were. `fn` returns the new address.
 */
export async function rewriteAddressList(value: string, fn: (address: string) => Promise<string>): Promise<string> {
  const edits: { start: number; end: number; text: string }[] = [];
  let segStart = -1;
  let segEnd = -1;
  let angle: { start: number; end: number } | null = null;
  let blocked = false; // a comment or blank inside a bare address: leave it alone
  let lastWasComment = false;
  const flush = async () => {
    let span: { start: number; end: number } | null = null;
    if (angle) span = angle;
    else if (segStart >= 0 && !blocked) span = { start: segStart, end: segEnd };
    if (span) {
      let start = span.start;
      const text = value.slice(start, span.end).trim();
      // A source route "@a,@b:user@c" keeps its route; only user@c is mapped.
      const colon = text.startsWith('@') ? text.indexOf(':') : -1;
      const addr = colon >= 0 ? text.slice(colon + 1) : text;
      start = span.start + value.slice(span.start, span.end).indexOf(addr);
      if (addr && !/\s/.test(addr)) {
        const next = await fn(addr);
        if (next !== addr) edits.push({ start, end: start + addr.length, text: next });
      }
    }
    segStart = segEnd = -1;
    angle = null;
    blocked = false;
    lastWasComment = false;
  };
  let i = 0;
  while (i < value.length) {
    const c = value[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < value.length && value[j] !== '"') j += value[j] === '\\' ? 2 : 1;
      if (segStart < 0) segStart = i;
      else if (lastWasComment) blocked = true;
      segEnd = Math.min(j + 1, value.length);
      lastWasComment = false;
      i = j + 1;
    } else if (c === '(') {
      let depth = 0;
      let j = i;
      for (; j < value.length; j++) {
        if (value[j] === '\\') { j++; continue; }
        if (value[j] === '(') depth++;
        else if (value[j] === ')' && --depth === 0) break;
      }
      lastWasComment = segStart >= 0;
      i = j + 1;
    } else if (c === '<') {
      const j = value.indexOf('>', i);
      if (j < 0) { blocked = true; break; }
      angle = { start: i + 1, end: j };
      i = j + 1;
    } else if (c === ',' || c === ';') {
      await flush();
      i++;
    } else if (c === ':') {
      // A group's display name ends here (unless inside a source route in angle brackets).
      segStart = segEnd = -1;
      blocked = false;
      lastWasComment = false;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
      i++;
      if (segStart >= 0) lastWasComment = true; // blank after a word: another word is a phrase
    } else {
      let j = i;
      while (j < value.length && !'"(<,;: \t\r\n'.includes(value[j]!)) j++;
      if (segStart < 0) segStart = i;
      else if (lastWasComment) blocked = true;
      segEnd = j;
      lastWasComment = false;
      i = j;
    }
  }
  await flush();
  let out = value;
  for (const e of edits.reverse()) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}
