// Logical-line reader shared by the main.cf and master.cf parsers. Follows
// Postfix's readllines(): blank lines and lines whose first non-blank
// character is '#' are skipped (also in the middle of a multi-line entry), a
// line that starts with whitespace continues the previous logical line
// (joined with one space), and trailing whitespace is trimmed.

import { ConfigError, configError } from './errors.js';

export interface LogicalLine {
  text: string;
  /** Line number (1-based) of the first physical line. */
  line: number;
}

export function logicalLines(
  text: string,
  file: string,
  what: string,
): { lines: LogicalLine[]; errors: ConfigError[] } {
  const lines: LogicalLine[] = [];
  const errors: ConfigError[] = [];
  const physical = text.split(/\r?\n/);
  let current: LogicalLine | null = null;
  for (let i = 0; i < physical.length; i++) {
    const raw = physical[i]!;
    const lineNo = i + 1;
    if (/^\s*$/.test(raw) || /^\s*#/.test(raw)) continue;
    if (/^\s/.test(raw)) {
      if (current === null) {
        errors.push(configError(file, lineNo, `continuation line before any ${what}: "${raw.trim()}"`));
        continue;
      }
      current.text += ' ' + raw.trim();
      continue;
    }
    if (current !== null) lines.push(current);
    current = { text: raw.trimEnd(), line: lineNo };
  }
  if (current !== null) lines.push(current);
  return { lines, errors };
}
