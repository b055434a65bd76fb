// postmap: see src/maps/cli.ts (like Postfix's postmap(1); hash:, btree:, cdb:, dbm:, sdbm: build Postactor's lmdb: FILE.lmdb).
import { postmapRun } from '../src/maps/cli.js';

process.exitCode = await postmapRun(process.argv.slice(2));
