// Logical lines of Postfix table files (the "readlline" convention shared by
// texthash/postmap input, regexp, pcre, cidr and alias files): a line whose
// first non-blank character is '#' is a comment, blank lines are skipped, and
// a line starting with whitespace continues the previous logical line (the
// newline is dropped, the leading whitespace kept, as Postfix does). Comment
// and blank lines between a line and its continuation are skipped.

export interface LogicalLine {
  /** Line number where the logical line starts (1-based). */
  line: number;
  text: string;
}

export function logicalLines(text: string): LogicalLine[] {
  const out: LogicalLine[] = [];
  const raw = text.split('\n');
  let cur: LogicalLine | null = null;
  for (let i = 0; i < raw.length; i++) {
    let l = raw[i]!;
    if (l.endsWith('\r')) l = l.slice(0, -1);
    const t = l.trim();
    if (t === '' || t.startsWith('#')) continue;
    if (/^\s/.test(l)) {
      if (cur !== null) {
        cur.text += l;
        continue;
      }
      // A continuation line without a preceding line: Postfix treats it as a line of its own.
    }
    cur = { line: i + 1, text: l };
    out.push(cur);
  }
  for (const l of out) l.text = l.text.trim();
  return out;
}

/** Splits "key whitespace value" (value trimmed); null when there is no whitespace/value. */
export function splitKeyValue(text: string): { key: string; value: string } | null {
  const m = /^(\S+)\s+(\S[\s\S]*)$/.exec(text);
  if (m === null) return null;
  return { key: m[1]!, value: m[2]!.trim() };
}
