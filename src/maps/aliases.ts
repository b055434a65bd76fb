// Alias file syntax (aliases(5)), the input of postalias/newaliases:
//   name: value, value, ...      continuation lines start with whitespace
// The name may be quoted ("foo bar": ...), the quotes are removed. Values are
// stored verbatim (trimmed, continuation lines joined as Postfix does:
// newline dropped, leading blanks kept), including ":include:/file",
// "|command" and "/file" values. Names are folded to lower case unless
// fold is off (postalias -f). A duplicate name keeps the first entry
// (warning). Postfix skips a line without "name:" or without a value with a
// warning ("need name:value pair"); Postactor rejects the file
// (TableError file:line), so a typo never silently drops an alias.

import { logicalLines } from './lines.js';
import { tableError } from './types.js';
import type { KeyValueOptions, ParsedKeyValues } from './texthash.js';

export function parseAliases(text: string, file: string, opts: KeyValueOptions = {}, into?: Map<string, string>): ParsedKeyValues {
  const fold = opts.fold ?? true;
  const map = into ?? new Map<string, string>();
  const warnings: string[] = [];
  for (const l of logicalLines(text)) {
    let name: string;
    let rest: string;
    if (l.text.startsWith('"')) {
      let i = 1;
      name = '';
      for (; i < l.text.length && l.text[i] !== '"'; i++) {
        if (l.text[i] === '\\' && i + 1 < l.text.length) i++;
        name += l.text[i];
      }
      if (i >= l.text.length) throw tableError(file, l.line, `unbalanced '"' in alias name`);
      rest = l.text.slice(i + 1).trimStart();
      if (!rest.startsWith(':')) throw tableError(file, l.line, 'need name:value pair');
      rest = rest.slice(1);
    } else {
      const colon = l.text.indexOf(':');
      if (colon < 0) throw tableError(file, l.line, 'need name:value pair');
      name = l.text.slice(0, colon).trim();
      rest = l.text.slice(colon + 1);
    }
    const value = rest.trim();
    if (name === '' || value === '') throw tableError(file, l.line, 'need name:value pair');
    const key = fold ? name.toLowerCase() : name;
    if (map.has(key) && !opts.replace) {
      if (!opts.quiet) warnings.push(`${file}:${l.line}: duplicate entry: "${key}" (keeping the first)`);
      continue;
    }
    map.set(key, value);
  }
  return { map, warnings };
}
