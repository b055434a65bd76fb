// regexp:/path and pcre:/path — Postfix regular-expression tables, evaluated
// with JavaScript RegExp for both types.
//
// File syntax (regexp_table(5), pcre_table(5)):
//   /pattern/flags result      first matching rule wins; the whole key is searched
//   !/pattern/flags result     matches when the pattern does NOT match ($n not allowed)
//   if /pattern/flags          rules up to the matching "endif" apply only when it matches
//   if !/pattern/flags         (nests)
//   endif
// Any non-blank character may serve as the delimiter instead of '/'; a
// backslash-escaped delimiter stays in the pattern. Flags: i toggles
// case-insensitive matching (ON by default), m toggles multi-line mode; for
// pcre: s (dot matches newline), x (extended: blanks and #-comments in the
// pattern are ignored), A (anchored at the start of the key), E and X
// (accepted, no effect: see below). In the result, $1..$9, ${n} and $(n)
// are replaced by the text of capture group n (an unmatched group gives the
// empty string); $$ is a literal $.
//
// Differences from Postfix, which uses POSIX regcomp(3) for regexp: and
// PCRE for pcre: —
//  * regexp: POSIX extended regexps choose the leftmost-LONGEST match, JS the
//    leftmost-first; with alternation the captured groups ($n) can differ.
//    Inside a bracket expression a backslash is literal in POSIX but an
//    escape in JS. POSIX classes like [[:digit:]] are translated to JS ranges.
//    JS escapes such as \d, \b, \s and lookarounds are accepted although
//    POSIX regcomp would not know them. The x flag (turn OFF extended syntax,
//    i.e. POSIX basic regexps) is rejected.
//  * pcre: PCRE's $ also matches before a final newline of the key (JS:
//    only at the end), so E (PCRE_DOLLAR_ENDONLY) is JS's normal behaviour;
//    U (ungreedy) has no JS equivalent and is rejected; X (PCRE_EXTRA) is
//    ignored. PCRE-only syntax (possessive quantifiers, atomic groups,
//    \A \Z, recursion, (?i) inline flags, ...) gives a compile TableError.
//  * Postfix skips a broken rule with a warning and keeps the rest of the
//    table; Postactor rejects the whole table with TableError "file:line: ..."
//    (lookups then fail temporarily instead of silently missing). The same
//    holds for a missing result, unbalanced if/endif, bad flags, bad $n.
//  * A result that substitutes to the empty string is returned as found with
//    value "" (Postfix returns it too, with a warning).

import { logicalLines } from './lines.js';
import { ReloadingFileTable } from './texthash.js';
import { NOT_FOUND, found, tableError, type InfoTable, type LookupResult } from './types.js';

type Piece = string | number; // literal text or a capture group number

interface Rule {
  type: 'rule';
  line: number;
  re: RegExp;
  negate: boolean;
  result: Piece[];
}

interface IfBlock {
  type: 'if';
  line: number;
  re: RegExp;
  negate: boolean;
  body: Node[];
}

type Node = Rule | IfBlock;

const POSIX_CLASSES: Record<string, string> = {
  alpha: 'a-zA-Z',
  digit: '0-9',
  alnum: 'a-zA-Z0-9',
  upper: 'A-Z',
  lower: 'a-z',
  space: ' \\t\\n\\r\\f\\v',
  blank: ' \\t',
  xdigit: '0-9A-Fa-f',
  punct: '!-\\/:-@\\[-`{-~',
  cntrl: '\\x00-\\x1f\\x7f',
  print: '\\x20-\\x7e',
  graph: '\\x21-\\x7e',
  word: 'a-zA-Z0-9_',
};

function translatePosixClasses(src: string): string {
  return src.replace(/\[:([a-z]+):\]/g, (all, name: string) => POSIX_CLASSES[name] ?? all);
}

/** PCRE_EXTENDED: drops unescaped whitespace and #-comments outside character classes. */
function stripExtended(src: string): string {
  let out = '';
  let inClass = false;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === '\\') {
      out += c + (src[i + 1] ?? '');
      i++;
    } else if (inClass) {
      if (c === ']') inClass = false;
      out += c;
    } else if (c === '[') {
      inClass = true;
      out += c;
      if (src[i + 1] === ']') { out += ']'; i++; }
      else if (src[i + 1] === '^' && src[i + 2] === ']') { out += '^]'; i += 2; }
    } else if (/\s/.test(c)) {
      continue;
    } else if (c === '#') {
      while (i < src.length && src[i] !== '\n') i++;
    } else {
      out += c;
    }
  }
  return out;
}

class Parser {
  constructor(private readonly file: string, private readonly pcre: boolean) {}

  /** Parses "!/pattern/flags" at the start of text; returns the rest. */
  pattern(text: string, line: number): { re: RegExp; negate: boolean; groups: number; rest: string } {
    let p = 0;
    let negate = false;
    if (text[p] === '!') {
      negate = true;
      p++;
      while (p < text.length && /\s/.test(text[p]!)) p++;
    }
    const delim = text[p];
    if (delim === undefined || /[\sA-Za-z0-9\\]/.test(delim)) {
      throw tableError(this.file, line, `expected "/pattern/flags result", "if /pattern/" or "endif": "${text}"`);
    }
    p++;
    let src = '';
    for (;;) {
      if (p >= text.length) throw tableError(this.file, line, `missing closing delimiter "${delim}" in pattern: "${text}"`);
      const c = text[p]!;
      if (c === '\\' && p + 1 < text.length) {
        src += c + text[p + 1];
        p += 2;
        continue;
      }
      if (c === delim) { p++; break; }
      src += c;
      p++;
    }
    let icase = true;
    let multi = false;
    let dotall = false;
    let extended = false;
    let anchored = false;
    while (p < text.length && !/\s/.test(text[p]!)) {
      const f = text[p++]!;
      if (f === 'i') icase = !icase;
      else if (f === 'm') multi = !multi;
      else if (this.pcre && f === 's') dotall = !dotall;
      else if (this.pcre && f === 'x') extended = !extended;
      else if (this.pcre && f === 'A') anchored = !anchored;
      else if (this.pcre && (f === 'E' || f === 'X')) continue;
      else if (this.pcre && f === 'U') throw tableError(this.file, line, `pcre option "U" (ungreedy) is not supported by Postactor's JavaScript regular expressions`);
      else if (!this.pcre && f === 'x') throw tableError(this.file, line, `regexp option "x" (POSIX basic regular expressions) is not supported by Postactor`);
      else throw tableError(this.file, line, `unknown ${this.pcre ? 'pcre' : 'regexp'} option "${f}"`);
    }
    if (extended) src = stripExtended(src);
    src = translatePosixClasses(src);
    let re: RegExp;
    try {
      re = new RegExp(src, (icase ? 'i' : '') + (multi ? 'm' : '') + (dotall ? 's' : '') + (anchored ? 'y' : ''));
    } catch (err) {
      throw tableError(this.file, line, `bad regular expression /${src}/: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`);
    }
    const groups = new RegExp(`${re.source}|`, re.flags.replace('y', '')).exec('')!.length - 1;
    return { re, negate, groups, rest: text.slice(p).trim() };
  }

  result(text: string, line: number, groups: number, negate: boolean): Piece[] {
    const pieces: Piece[] = [];
    let lit = '';
    let i = 0;
    while (i < text.length) {
      const c = text[i]!;
      if (c !== '$') { lit += c; i++; continue; }
      const next = text[i + 1];
      if (next === '$') { lit += '$'; i += 2; continue; }
      let name: string;
      if (next === '{' || next === '(') {
        const close = next === '{' ? '}' : ')';
        const end = text.indexOf(close, i + 2);
        if (end < 0) throw tableError(this.file, line, `bad replacement syntax: missing "${close}" in "${text}"`);
        name = text.slice(i + 2, end);
        i = end + 1;
      } else {
        const m = /^[A-Za-z0-9_]+/.exec(text.slice(i + 1));
        if (m === null) throw tableError(this.file, line, `bad replacement syntax: "$" must be followed by a group number or "$": "${text}"`);
        name = m[0];
        i += 1 + name.length;
      }
      if (!/^\d+$/.test(name)) throw tableError(this.file, line, `non-numeric replacement index "${name}"`);
      const n = Number(name);
      if (negate) throw tableError(this.file, line, `$number found in negative match replacement text`);
      if (n < 1 || n > groups) throw tableError(this.file, line, `out of range replacement index "${name}"`);
      if (lit !== '') { pieces.push(lit); lit = ''; }
      pieces.push(n);
    }
    if (lit !== '') pieces.push(lit);
    return pieces;
  }

  parse(text: string): Node[] {
    const top: Node[] = [];
    const stack: { block: IfBlock | null; body: Node[] }[] = [{ block: null, body: top }];
    for (const l of logicalLines(text)) {
      const body = stack[stack.length - 1]!.body;
      if (/^endif$/i.test(l.text) || /^endif\s/i.test(l.text)) {
        if (l.text.length > 5) throw tableError(this.file, l.line, `extra text after ENDIF: "${l.text}"`);
        if (stack.length === 1) throw tableError(this.file, l.line, 'ENDIF without matching IF');
        stack.pop();
        continue;
      }
      const ifm = /^if(\s+|(?=!))(.*)$/i.exec(l.text);
      if (ifm !== null) {
        const p = this.pattern(ifm[2]!, l.line);
        if (p.rest !== '') throw tableError(this.file, l.line, `extra text after IF statement: "${p.rest}"`);
        const block: IfBlock = { type: 'if', line: l.line, re: p.re, negate: p.negate, body: [] };
        body.push(block);
        stack.push({ block, body: block.body });
        continue;
      }
      const p = this.pattern(l.text, l.line);
      if (p.rest === '') throw tableError(this.file, l.line, 'no replacement text');
      body.push({ type: 'rule', line: l.line, re: p.re, negate: p.negate, result: this.result(p.rest, l.line, p.groups, p.negate) });
    }
    if (stack.length > 1) throw tableError(this.file, stack[stack.length - 1]!.block!.line, 'IF has no matching ENDIF');
    return top;
  }
}

function test(re: RegExp, negate: boolean, key: string): RegExpExecArray | null | true {
  re.lastIndex = 0;
  const m = re.exec(key);
  if (negate) return m === null ? true : null;
  return m;
}

function evaluate(nodes: Node[], key: string): string | null {
  for (const n of nodes) {
    const m = test(n.re, n.negate, key);
    if (m === null) continue;
    if (n.type === 'if') {
      const r = evaluate(n.body, key);
      if (r !== null) return r;
      continue;
    }
    if (m === true) return n.result.join('');
    return n.result.map((p) => (typeof p === 'number' ? (m[p] ?? '') : p)).join('');
  }
  return null;
}

export class RegexpTable extends ReloadingFileTable<Node[]> implements InfoTable {
  readonly kind = 'pattern';
  readonly foldsCase = false;
  readonly warnings: readonly string[] = [];
  private readonly parser: Parser;

  constructor(readonly spec: string, file: string, pcre: boolean) {
    super(file);
    this.parser = new Parser(file, pcre);
    this.load();
  }

  protected parse(text: string): Node[] {
    return this.parser.parse(text);
  }

  lookup(key: string): LookupResult {
    const r = evaluate(this.current(), key);
    return r === null ? NOT_FOUND : found(r);
  }
}
