// nis:map — Postactor has no NIS client. It treats nis: tables the way Postfix
// does on a host without an NIS domain (dict_nis.c: "NIS domain name not set -
// NIS lookups disabled"): the table opens, a warning is logged once, and every
// lookup finds nothing. This is what lets Postfix's default
// "alias_maps = hash:/etc/aliases, nis:mail.aliases" work unchanged: NIS
// aliases are skipped and the hash: table answers.

import { tableNotice } from './indexed.js';
import { NOT_FOUND, type InfoTable, type LookupResult } from './types.js';

export class NisTable implements InfoTable {
  readonly kind = 'fixed';
  readonly foldsCase = true;
  readonly warnings: readonly string[] = [];

  constructor(readonly spec: string) {
    tableNotice('nis:', 'warning', `${spec}: NIS is not supported by Postactor - NIS lookups disabled`);
  }

  lookup(): LookupResult {
    return NOT_FOUND;
  }
}
