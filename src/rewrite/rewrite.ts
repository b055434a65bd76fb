/**
 * trivial-rewrite's "rewrite" operation (Postfix's rewrite.c), as a pure function: an address in
 * external form becomes the canonical user@domain form.
 *
 *   - source routes are stripped: "@a,@b:user@c" → "user@c";
 *   - swap_bangpath (no "@" in the address): "site!user" → "user@site";
 *   - allow_percent_hack (no "@"): the rightmost "%" becomes "@": "user%site" → "user@site";
 *     ("user%site@ourdomain" is the resolver's business: see resolve.ts);
 *   - context 'local' only: append_at_myorigin ("user" → "user@$myorigin") and
 *     append_dot_mydomain ("user@host" → "user@host.$mydomain"; default no since Postfix 3.0);
 *     context 'remote' leaves an unqualified address alone (remote_header_rewrite_domain empty);
 *   - one trailing dot of the domain is dropped ("user@example.com." → "user@example.com"),
 *     never "..", nor "@.".
 */

export interface RewriteSettings {
  myorigin: string;
  mydomain: string;
  swapBangpath: boolean;
  allowPercentHack: boolean;
  appendAtMyorigin: boolean;
  appendDotMydomain: boolean;
}

export type RewriteContext = 'local' | 'remote';

/** The rightmost '@' that is outside double quotes; -1 if none. */
export function unquotedAt(address: string, ch = '@', rightmost = true): number {
  let quoted = false;
  let found = -1;
  for (let i = 0; i < address.length; i++) {
    const c = address[i];
    if (c === '\\') { i++; continue; }
    if (c === '"') { quoted = !quoted; continue; }
    if (!quoted && c === ch) {
      if (!rightmost) return i;
      found = i;
    }
  }
  return found;
}

/** "@a,@b:user@c" → "user@c" (RFC 821 source route); other addresses unchanged. */
export function stripSourceRoute(address: string): string {
  let a = address;
  // Bounded: each pass removes at least one character.
  while (a.startsWith('@')) {
    const colon = unquotedAt(a, ':', false);
    if (colon < 0) break;
    a = a.slice(colon + 1);
  }
  return a;
}

/** Drops one trailing dot of the domain part, but not ".." or "@.". */
export function stripTrailingDot(address: string): string {
  if (address.endsWith('.') && !address.endsWith('..') && !address.endsWith('@.')) return address.slice(0, -1);
  return address;
}

export function rewriteAddress(address: string, context: RewriteContext, s: RewriteSettings): string {
  let a = stripSourceRoute(address.trim());
  if (a === '') return a; // the null sender stays null
  if (unquotedAt(a) < 0) {
    const bang = s.swapBangpath ? unquotedAt(a, '!', false) : -1;
    if (bang > 0 && bang < a.length - 1) a = `${a.slice(bang + 1)}@${a.slice(0, bang)}`;
    else if (s.allowPercentHack) {
      const pct = unquotedAt(a, '%');
      if (pct > 0 && pct < a.length - 1) a = `${a.slice(0, pct)}@${a.slice(pct + 1)}`;
    }
  }
  if (context === 'local') {
    const at = unquotedAt(a);
    if (at < 0) {
      if (s.appendAtMyorigin && s.myorigin) a = `${a}@${s.myorigin}`;
    } else if (s.appendDotMydomain && s.mydomain) {
      const domain = a.slice(at + 1);
      if (domain !== '' && !domain.includes('.') && !domain.startsWith('[')) a = `${a}.${s.mydomain}`;
    }
  }
  return stripTrailingDot(a);
}
