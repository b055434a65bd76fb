/**
 * RFC 822 address lists, as Postfix's sendmail reads them (tok822): a command-line recipient
 * argument or a To/Cc/Bcc header value may hold "a@b, c@d", "Name <a@b>", comments, quoted
 * strings and groups ("list: a@b, c@d;", "undisclosed-recipients:;"). Returns the addr-specs
 * in order, without display names, comments or source routes.
 */

type Tok = { t: 'atom' | 'qstr' | 'dlit'; v: string } | { t: 'special'; v: string } | { t: 'space' };

const SPECIALS = '()<>@,;:\\".[]';

function tokenize(s: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
      while (i < s.length && ' \t\r\n'.includes(s[i]!)) i++;
      out.push({ t: 'space' });
    } else if (c === '(') {
      // Comment, possibly nested; dropped (it separates like whitespace).
      let depth = 0;
      for (; i < s.length; i++) {
        if (s[i] === '\\') { i++; continue; }
        if (s[i] === '(') depth++;
        else if (s[i] === ')' && --depth === 0) { i++; break; }
      }
      out.push({ t: 'space' });
    } else if (c === '"') {
      let v = '"';
      for (i++; i < s.length && s[i] !== '"'; i++) {
        if (s[i] === '\\' && i + 1 < s.length) v += s[i++];
        v += s[i];
      }
      i++;
      out.push({ t: 'qstr', v: v + '"' });
    } else if (c === '[') {
      const end = s.indexOf(']', i);
      const stop = end < 0 ? s.length : end + 1;
      out.push({ t: 'dlit', v: s.slice(i, stop) });
      i = stop;
    } else if (SPECIALS.includes(c)) {
      out.push({ t: 'special', v: c });
      i++;
    } else {
      let v = '';
      while (i < s.length && !SPECIALS.includes(s[i]!) && !' \t\r\n'.includes(s[i]!)) v += s[i++];
      out.push({ t: 'atom', v });
    }
  }
  return out;
}

/** The text of tokens as an addr-spec: no whitespace around "@" and ".", words joined by one space. */
function join(toks: Tok[]): string {
  let out = '';
  let pendingSpace = false;
  for (const tk of toks) {
    if (tk.t === 'space') { pendingSpace = out.length > 0; continue; }
    const v = tk.v;
    const glue = tk.t === 'special' || out.endsWith('@') || out.endsWith('.');
    if (pendingSpace && !glue) out += ' ';
    pendingSpace = false;
    out += v;
  }
  return out;
}

/** Removes the quotes of a quoted local part when they are not needed ("joe"@x → joe@x). */
function unquoteLocal(addr: string): string {
  const m = /^"((?:[^"\\]|\\.)*)"(@.*)?$/.exec(addr);
  if (!m) return addr;
  const local = m[1]!.replace(/\\(.)/g, '$1');
  if (/^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$/.test(local) && !local.startsWith('.') && !local.endsWith('.') && !local.includes('..')) return local + (m[2] ?? '');
  return addr;
}

/** Whether tokens (ignoring blanks) are a whole local@domain. */
function isAddrSpec(toks: Tok[]): boolean {
  const words = toks.filter((t) => t.t !== 'space');
  const at = words.findIndex((t) => t.t === 'special' && t.v === '@');
  return at > 0 && at < words.length - 1 && words[words.length - 1]!.t !== 'special';
}

/** Parses an address list; returns the addresses (possibly none). */
export function parseAddressList(value: string): string[] {
  const toks = tokenize(value);
  const addrs: string[] = [];
  let cur: Tok[] = [];
  let angle: Tok[] | null = null;
  let inAngle = false;
  const finish = () => {
    const src = angle ?? cur;
    if (angle) {
      // Drop a source route: "<@a,@b:user@host>" → user@host.
      const colon = src.findIndex((t) => t.t === 'special' && t.v === ':');
      const body = colon >= 0 && src[0]?.t === 'special' && src[0].v === '@' ? src.slice(colon + 1) : src;
      addrs.push(unquoteLocal(join(body)));
    } else if (src.some((t) => t.t !== 'space')) {
      addrs.push(unquoteLocal(join(src)));
    }
    cur = [];
    angle = null;
  };
  for (const tk of toks) {
    if (inAngle) {
      if (tk.t === 'special' && tk.v === '>') inAngle = false;
      else angle!.push(tk);
      continue;
    }
    if (tk.t === 'special') {
      if (tk.v === '<') { inAngle = true; angle = []; continue; }
      if (tk.v === ',' || tk.v === ';') { finish(); continue; }
      if (tk.v === ':' ) { cur = []; continue; } // "group-name:" starts a group; the name is no address
      if (tk.v === '>') continue;
    }
    if (angle) continue; // text after "<addr>" (a trailing comment or junk) is ignored
    // A complete user@domain followed by white space and a word: a new address with the comma
    // left out, as Postfix's tok822_parse reads "a@b c@d" (and "me@x\nRCPT TO:<x@evil>" as me@x).
    if ((tk.t === 'atom' || tk.t === 'qstr') && cur.length > 0 && cur[cur.length - 1]!.t === 'space' && isAddrSpec(cur)) finish();
    cur.push(tk);
  }
  finish();
  return addrs;
}

/** Quotes a display name for "From: phrase <addr>" when it holds specials or "%!" (Postfix hfrom_format=standard). */
export function formatPhrase(name: string): string {
  const clean = name.replace(/[\r\n]/g, ' ');
  if (/[()<>@,;:\\".[\]%!]/.test(clean)) return `"${clean.replace(/(["\\])/g, '\\$1')}"`;
  return clean.trim().split(/\s+/).join(' ');
}
