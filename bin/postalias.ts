// postalias: see src/maps/cli.ts (like Postfix's postalias(1); hash:, btree:, cdb:, dbm:, sdbm: build Postactor's lmdb: FILE.lmdb).
import { postaliasRun } from '../src/maps/cli.js';

process.exitCode = await postaliasRun(process.argv.slice(2));
