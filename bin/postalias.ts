// postalias: see src/maps/cli.ts (like Postfix's postalias(1); Postactor builds lmdb: tables only).
import { postaliasMain } from '../src/maps/cli.js';

process.exitCode = postaliasMain(process.argv.slice(2));
