/**
 * Postfix 3.8's parameters, as facts: every name `postconf -d` knows, with its default as
 * Debian's `postconf -d` prints it (Postfix 3.8.20's where 3.8 changed it), its type, the
 * bounds Postfix's daemons enforce, and which Postfix daemons read it. The table is data
 * (postfix-3.8.json beside the source), read once per thread.
 *
 * Types are Postfix's configuration table kinds: str (string, min/max = length bounds), raw
 * (string, not $-expanded by Postfix), int, nint (an int whose default is an expression),
 * long (sizes), bool, nbool (a bool whose default is an expression), time (with a unit).
 * A bound of 0 or an absent bound means "no limit", as in Postfix's mail_conf_*.c.
 */

import { readFileSync } from 'node:fs';

export type ParamType = 'str' | 'raw' | 'int' | 'nint' | 'long' | 'bool' | 'nbool' | 'time';

export interface PostfixParam {
  type: ParamType;
  /** The unexpanded default, as `postconf -d` prints it. */
  default: string;
  min?: number;
  max?: number;
  /** Postfix daemons (source folders) whose configuration tables hold it. */
  daemons: readonly string[];
  /** Postfix computes the default at run time (myhostname, mydomain, mynetworks, process_id). */
  computed?: boolean;
  /** Kept by Postfix for old configurations only; not listed by `postconf -d`. */
  legacy?: boolean;
}

const FILE = new URL('../../../../src/config/params/postfix-3.8.json', import.meta.url);

export const POSTFIX_PARAMS: Readonly<Record<string, PostfixParam>> = Object.freeze(
  JSON.parse(readFileSync(FILE, 'utf8')) as Record<string, PostfixParam>,
);
