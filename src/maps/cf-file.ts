// The parameter files of Postfix's database tables (pgsql_table(5), mysql_table(5),
// sqlite_table(5), memcache_table(5)): "name = value" lines, "#" comment lines, and
// continuation lines that start with whitespace — the format of main.cf, without $name
// expansion (Postfix's cfg_parser reads these values literally).
//
// Each table type states the names it knows; a name it does not know is kept as a warning
// (Postfix ignores it silently, which hides typos such as "querry"). Names Postactor refuses
// (legacy or not built) stop the table with "file: name: what to do instead".

import fs from 'node:fs';

import { TableError, tableError } from './types.js';

export class CfFile {
  readonly warnings: string[] = [];
  private readonly values = new Map<string, { value: string; line: number }>();

  constructor(readonly file: string, text: string, known: readonly string[], refused: Readonly<Record<string, string>> = {}) {
    const lines = text.split('\n');
    let current: { name: string; value: string; line: number } | null = null;
    const flush = () => {
      if (current) this.values.set(current.name, { value: current.value.trim(), line: current.line });
      current = null;
    };
    lines.forEach((raw, i) => {
      const line = raw.replace(/\r$/, '');
      if (/^\s*#/.test(line) || line.trim() === '') return;
      if (/^\s/.test(line)) {
        if (!current) throw tableError(file, i + 1, 'missing parameter name before continuation line');
        current.value += ' ' + line.trim();
        return;
      }
      flush();
      const eq = line.indexOf('=');
      if (eq < 0) throw tableError(file, i + 1, `missing '=' after attribute name: "${line.trim()}"`);
      const name = line.slice(0, eq).trim();
      if (name === '') throw tableError(file, i + 1, `missing attribute name before '='`);
      current = { name, value: line.slice(eq + 1), line: i + 1 };
    });
    flush();
    for (const [name, { line }] of this.values) {
      if (refused[name] !== undefined) throw tableError(file, line, `${name}: ${refused[name]}`);
      if (!known.includes(name)) this.warnings.push(`${file}:${line}: unknown parameter "${name}", ignored`);
    }
  }

  static read(file: string, known: readonly string[], refused: Readonly<Record<string, string>> = {}): CfFile {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new TableError(`${file}: cannot open: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (e as Error).message}`);
    }
    return new CfFile(file, text, known, refused);
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  str(name: string, dflt: string): string {
    return this.values.get(name)?.value ?? dflt;
  }

  /** A required value (Postfix: fatal when missing). */
  required(name: string): string {
    const v = this.values.get(name)?.value;
    if (v === undefined || v === '') throw new TableError(`${this.file}: missing "${name}" parameter`);
    return v;
  }

  int(name: string, dflt: number, min = 0): number {
    const v = this.values.get(name);
    if (!v) return dflt;
    if (!/^-?\d+$/.test(v.value) || Number(v.value) < min) throw tableError(this.file, v.line, `bad numerical configuration: ${name} = ${v.value}`);
    return Number(v.value);
  }

  bool(name: string, dflt: boolean): boolean {
    const v = this.values.get(name);
    if (!v) return dflt;
    const s = v.value.toLowerCase();
    if (s === 'yes' || s === 'true' || s === '1') return true;
    if (s === 'no' || s === 'false' || s === '0') return false;
    throw tableError(this.file, v.line, `bad boolean configuration: ${name} = ${v.value}`);
  }
}
