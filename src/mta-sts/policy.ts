/**
 * MTA-STS texts (RFC 8461 §3.1, §3.2, §4.1): the _mta-sts TXT record, the policy file, and
 * which MX host names a policy allows. Pure functions; errors are values (a text saying what
 * is wrong), because a bad record or policy means "no policy", never a crash.
 *
 *   stsRecordId(txts)        the id of the one "v=STSv1;" TXT record, or why there is none
 *   parseStsPolicy(text)     version, mode, mx patterns and max_age, or what is wrong
 *   mxMatches(policy, host)  whether an MX host name matches one of the policy's mx patterns
 */

export type StsMode = 'enforce' | 'testing' | 'none';

export interface StsPolicy {
  mode: StsMode;
  /** mx patterns, lower case, without a trailing dot: "mail.example.com", "*.example.net". */
  mx: string[];
  /** Seconds; RFC 8461 caps it at one year (31557600). */
  maxAge: number;
}

/** RFC 8461 §3.2: max_age is at most 31557600 s (about a year). */
export const MAX_AGE_LIMIT = 31557600;

/**
 * The id of the domain's MTA-STS TXT record. Records that do not start with "v=STSv1" are
 * not MTA-STS records and are ignored; anything but exactly one remaining record, or one
 * without a valid id, means the domain has no policy (RFC 8461 §3.1).
 */
export function stsRecordId(txts: readonly string[]): { id: string } | { error: string } {
  const sts = txts.filter((t) => /^v=STSv1\s*(;|$)/.test(t));
  if (sts.length === 0) return { error: 'no "v=STSv1" TXT record' };
  if (sts.length > 1) return { error: `${sts.length} "v=STSv1" TXT records (there must be one)` };
  let id: string | null = null;
  const fields = sts[0]!.split(';').map((f) => f.trim());
  for (const f of fields.slice(1)) {
    if (f === '') continue; // the optional trailing ";"
    const eq = f.indexOf('=');
    if (eq <= 0) return { error: `malformed TXT record field "${f}"` };
    const name = f.slice(0, eq);
    const value = f.slice(eq + 1);
    if (name === 'id') {
      if (!/^[A-Za-z0-9]{1,32}$/.test(value)) return { error: `malformed TXT record id "${value}"` };
      id ??= value; // the first id counts
    }
    // Other fields are extensions: ignored.
  }
  return id === null ? { error: 'TXT record without an id' } : { id };
}

/** A host name as DNS writes it, for an mx pattern (after an optional "*."). */
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * Parses a policy file: "key: value" lines (CRLF or LF). version must be STSv1; mode
 * enforce, testing or none; max_age a number of seconds (capped at a year); mx one line per
 * pattern, required unless the mode is none. The first of a repeated key counts (except mx);
 * unknown keys are extensions and ignored.
 */
export function parseStsPolicy(text: string): StsPolicy | { error: string } {
  const fields = new Map<string, string>();
  const mx: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return { error: `malformed policy line "${line.slice(0, 80)}"` };
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === 'mx') {
      const pattern = value.toLowerCase().replace(/\.$/, '');
      const host = pattern.startsWith('*.') ? pattern.slice(2) : pattern;
      if (!HOSTNAME.test(host)) return { error: `malformed mx pattern "${value}"` };
      mx.push(pattern);
    } else if (!fields.has(key)) {
      fields.set(key, value);
    }
  }
  const version = fields.get('version');
  if (version !== 'STSv1') return { error: version === undefined ? 'policy without version' : `unknown policy version "${version}"` };
  const modeText = fields.get('mode');
  if (modeText === undefined) return { error: 'policy without mode' };
  const mode = modeText.toLowerCase();
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return { error: `unknown policy mode "${modeText}"` };
  const age = fields.get('max_age');
  if (age === undefined) return { error: 'policy without max_age' };
  if (!/^\d{1,10}$/.test(age)) return { error: `malformed max_age "${age}"` };
  if (mode !== 'none' && mx.length === 0) return { error: `policy in mode ${mode} without mx` };
  return { mode, mx, maxAge: Math.min(Number(age), MAX_AGE_LIMIT) };
}

/**
 * RFC 8461 §4.1: an MX host is valid when its name equals a pattern, or the pattern is
 * "*.rest" and the name is one label followed by ".rest" ("*.example.com" matches
 * "mx.example.com", not "example.com" nor "a.b.example.com"). Case-insensitive; a trailing
 * dot on the host name is ignored.
 */
export function mxMatches(policy: { mx: readonly string[] }, host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return policy.mx.some((p) => {
    if (!p.startsWith('*.')) return h === p;
    const dot = h.indexOf('.');
    return dot > 0 && h.slice(dot + 1) === p.slice(2);
  });
}
