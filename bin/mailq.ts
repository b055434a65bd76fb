/**
 * mailq — the Sendmail-compatible queue listing, the same as `postqueue -p`:
 *   mailq [-c config_dir] [--json]
 * With --json it prints postqueue -j's JSON lines instead.
 */
import { commandConfig, fatal, getopt, usageError, UsageError } from '../src/queue/admin.js';
import { listQueue } from '../src/queue/listing.js';

const PROG = 'mailq';
const USAGE = 'usage: mailq [-c config_dir] [--json]';

function main(): void {
  let parsed;
  try {
    parsed = getopt(process.argv.slice(2), 'c:v');
  } catch (err) {
    if (err instanceof UsageError) usageError(PROG, USAGE, err.message);
    throw err;
  }
  if (parsed.long.has('help')) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (parsed.positionals.length > 0) usageError(PROG, USAGE, `unexpected argument: ${parsed.positionals[0]}`);
  let dir: string | undefined;
  for (const [c, v] of parsed.opts) if (c === 'c') dir = v;
  process.stdout.write(listQueue(commandConfig(PROG, dir), parsed.long.has('json')));
}

try {
  main();
} catch (err) {
  fatal(PROG, (err as Error).message);
}
