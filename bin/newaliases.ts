// newaliases: see src/maps/cli.ts (like Postfix's newaliases(1); Postactor builds lmdb: tables only).
import { newaliasesMain } from '../src/maps/cli.js';

process.exitCode = newaliasesMain(process.argv.slice(2));
