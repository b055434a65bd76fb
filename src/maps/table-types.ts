/**
 * The table types openTable() (./index.ts) opens, apart from the tables themselves: postconf -m
 * prints them, and a command that only needs the list does not load every table's code (lmdb's
 * native module alone is ~50 ms of a command's start).
 */
import { INDEXED_TYPES } from './indexed.js';

/** Every table type openTable() opens, sorted as Postfix's postconf -m prints them. */
export const TABLE_TYPES: readonly string[] = ['cidr', 'inline', 'lmdb', 'nis', 'pcre', 'regexp', 'static', 'texthash', ...INDEXED_TYPES.keys(),
  'memcache', 'mysql', 'pgsql', 'proxy', 'socketmap', 'sqlite', 'tcp'].sort();
