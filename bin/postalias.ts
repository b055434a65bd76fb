// postalias: see src/maps/cli.ts (like Postfix's postalias(1); hash:, btree:, cdb:, dbm:, sdbm: build Postactor's lmdb: FILE.lmdb).
import { postaliasMain } from '../src/maps/cli.js';

process.exitCode = postaliasMain(process.argv.slice(2));
