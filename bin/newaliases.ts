// newaliases: see src/maps/cli.ts (like Postfix's newaliases(1); hash:, btree:, cdb:, dbm:, sdbm: build Postactor's lmdb: FILE.lmdb).
import { newaliasesMain } from '../src/maps/cli.js';

process.exitCode = newaliasesMain(process.argv.slice(2));
