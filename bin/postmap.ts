// postmap: see src/maps/cli.ts (like Postfix's postmap(1); Postactor builds lmdb: tables only).
import { postmapMain } from '../src/maps/cli.js';

process.exitCode = postmapMain(process.argv.slice(2));
