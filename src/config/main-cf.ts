// Parser for Postfix-style main.cf files (postconf(5) syntax):
// "name = value" logical lines, comments, continuation lines, later settings
// override earlier ones. Values are stored unexpanded; see expand.ts.

import { ConfigError, configError } from './errors.js';
import { logicalLines } from './lines.js';

/**
 * A parameter name, as Postfix's split_nameval() takes it: anything up to blanks or '='. Names
 * made from master.cf service names may hold other characters than [A-Za-z0-9_]
 * ("policyd-spf_time_limit"); only [A-Za-z0-9_] names can be $-referenced.
 */
export const PARAM_NAME_RE = /^[^\s=]+$/;

export interface MainCfSetting {
  value: string;
  line: number;
}

export function parseMainCf(
  text: string,
  file: string,
): { params: Map<string, MainCfSetting>; errors: ConfigError[] } {
  const { lines, errors } = logicalLines(text, file, 'parameter');
  const params = new Map<string, MainCfSetting>();
  for (const { text: entry, line } of lines) {
    const eq = entry.indexOf('=');
    if (eq < 0) {
      const word = entry.trim().split(/\s+/)[0] ?? '';
      errors.push(configError(file, line, `missing '=' after attribute name: "${word}"`));
      continue;
    }
    const name = entry.slice(0, eq).trim();
    const value = entry.slice(eq + 1).trim();
    if (name === '') {
      errors.push(configError(file, line, `missing attribute name: "${entry.trim()}"`));
      continue;
    }
    if (!PARAM_NAME_RE.test(name)) {
      errors.push(configError(file, line, `bad parameter name: "${name}"`));
      continue;
    }
    // A later setting overrides an earlier one (delete first so that Map
    // iteration order follows the effective line order).
    params.delete(name);
    params.set(name, { value, line });
  }
  return { params, errors };
}
