// $-expansion of parameter values, after Postfix's mac_expand(3):
//   $name  ${name}  $(name)          value of name ("" when undefined, with a warning)
//   ${name?text}   ${name?{text}}    text when name is non-empty, else ""
//   ${name:text}   ${name:{text}}    text when name is empty/undefined, else ""
//   ${name?{text1}:{text2}}          text1 when non-empty, else text2 (Postfix >= 3.0)
//   $$                               a literal '$'
// The chosen text is itself expanded. Recursion through referenced parameters
// (and loop detection) is done by the caller's lookup function (config.ts).
//   ${{a} OP {b} ? {x} : {y}}        relational forms (Postfix >= 3.0): OP is ==, !=, <, <=,
//                                    >=, > (numbers compare as numbers, else as strings), or
//                                    <level, <=level, >level, >=level (compatibility levels);
//                                    ${{a} OP {b}} alone yields "true" or "".

const NAME_CHAR = /[A-Za-z0-9_]/;

export interface ExpandContext {
  /** Fully expanded value of a parameter, or undefined when it is unknown. */
  lookup(name: string): string | undefined;
  /** Called for a plain reference ($name) to an unknown parameter. */
  onUndefined(name: string): void;
  /** Reports a syntax error; must throw. */
  fail(text: string): never;
}

/** Index just past the group that closes the opener at text[start]. */
function matchClose(text: string, start: number, open: string, close: string): number {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === open) depth++;
    else if (c === close) {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/** Parses "{a}" or "{a}:{b}" (whitespace around groups ignored); null if not that form. */
function parseBraced(text: string): { first: string; second: string | null } | null {
  let s = text.trim();
  if (!s.startsWith('{')) return null;
  const end1 = matchClose(s, 0, '{', '}');
  if (end1 < 0) return null;
  const first = s.slice(1, end1 - 1);
  s = s.slice(end1).trim();
  if (s === '') return { first, second: null };
  if (!s.startsWith(':')) return null;
  s = s.slice(1).trim();
  if (!s.startsWith('{')) return null;
  const end2 = matchClose(s, 0, '{', '}');
  if (end2 !== s.length) return null;
  return { first, second: s.slice(1, end2 - 1) };
}

export function expandValue(text: string, ctx: ExpandContext): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (next === '{' || next === '(') {
      const close = next === '{' ? '}' : ')';
      const end = matchClose(text, i + 1, next, close);
      if (end < 0) ctx.fail(`missing '${close}' in "${text.slice(i)}"`);
      const inner = text.slice(i + 2, end - 1);
      out += expandMacro(inner, ctx);
      i = end;
      continue;
    }
    if (next !== undefined && NAME_CHAR.test(next)) {
      let j = i + 1;
      while (j < text.length && NAME_CHAR.test(text[j]!)) j++;
      out += plainRef(text.slice(i + 1, j), ctx);
      i = j;
      continue;
    }
    // A '$' not followed by a name or bracket is kept literally.
    out += '$';
    i++;
  }
  return out;
}

function plainRef(name: string, ctx: ExpandContext): string {
  const v = ctx.lookup(name);
  if (v === undefined) {
    ctx.onUndefined(name);
    return '';
  }
  return v;
}

function expandMacro(inner: string, ctx: ExpandContext): string {
  let j = 0;
  while (j < inner.length && NAME_CHAR.test(inner[j]!)) j++;
  const name = inner.slice(0, j);
  if (name === '') {
    if (inner.trimStart().startsWith('{')) return relational(inner, ctx);
    ctx.fail(`bad macro name in "\${${inner}}"`);
  }
  const rest = inner.slice(j);
  if (rest === '') return plainRef(name, ctx);
  const op = rest[0];
  if (op !== '?' && op !== ':') ctx.fail(`bad macro syntax in "\${${inner}}"`);
  const body = rest.slice(1);
  const value = ctx.lookup(name) ?? '';
  const nonEmpty = value !== '';
  const braced = parseBraced(body);
  if (op === '?') {
    if (braced !== null) {
      if (nonEmpty) return expandValue(braced.first, ctx);
      return braced.second === null ? '' : expandValue(braced.second, ctx);
    }
    return nonEmpty ? expandValue(body, ctx) : '';
  }
  // op === ':'
  if (braced !== null && braced.second === null) return nonEmpty ? '' : expandValue(braced.first, ctx);
  return nonEmpty ? '' : expandValue(body, ctx);
}

const RELOPS = ['<=level', '>=level', '<level', '>level', '==', '!=', '<=', '>=', '<', '>'];

/** Compatibility levels compare per dotted component, numerically ("3.10" > "3.6" > "2"). */
function compareLevels(a: string, b: string, fail: (text: string) => never): number {
  const parse = (s: string): number[] => {
    if (!/^\d+(\.\d+){0,2}$/.test(s)) fail(`bad compatibility level: "${s}"`);
    return s.split('.').map(Number);
  };
  const x = parse(a);
  const y = parse(b);
  for (let k = 0; k < 3; k++) {
    const d = (x[k] ?? 0) - (y[k] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** "{a} OP {b}" then optionally "? {x} : {y}", as Postfix's mac_expand evaluates it. */
function relational(inner: string, ctx: ExpandContext): string {
  const bad = (): never => ctx.fail(`bad relational expression: "\${${inner}}"`);
  let s = inner.trim();
  const group = (): string => {
    if (!s.startsWith('{')) bad();
    const end = matchClose(s, 0, '{', '}');
    if (end < 0) bad();
    const text = s.slice(1, end - 1);
    s = s.slice(end).trim();
    return text;
  };
  const left = expandValue(group(), ctx).trim();
  const op = RELOPS.find((o) => s.startsWith(o));
  if (op === undefined) return bad();
  s = s.slice(op.length).trim();
  const right = expandValue(group(), ctx).trim();
  let delta: number;
  if (op.endsWith('level')) delta = compareLevels(left, right, ctx.fail);
  else if (/^\d+$/.test(left) && /^\d+$/.test(right)) delta = Number(left) - Number(right);
  else delta = left < right ? -1 : left > right ? 1 : 0;
  const base = op.replace('level', '');
  const truth = base === '==' ? delta === 0 : base === '!=' ? delta !== 0 : base === '<' ? delta < 0
    : base === '<=' ? delta <= 0 : base === '>=' ? delta >= 0 : delta > 0;
  if (s === '') return truth ? 'true' : '';
  const cond = s[0];
  if (cond !== '?' && cond !== ':') return bad();
  const braced = parseBraced(s.slice(1));
  if (braced === null) return bad();
  if (cond === '?') return truth ? expandValue(braced.first, ctx) : braced.second === null ? '' : expandValue(braced.second, ctx);
  if (braced.second !== null) return bad();
  return truth ? '' : expandValue(braced.first, ctx);
}

/** Names referenced with $name, ${name...} or $(name...) in a raw value. */
export function referencedNames(text: string): string[] {
  const names: string[] = [];
  const re = /\$(\$|[{(]?)([A-Za-z0-9_]+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    if (m[1] === '$') continue; // "$$name" is a literal "$name"
    names.push(m[2]!);
  }
  return names;
}
