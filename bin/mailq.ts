/**
 * mailq — the Sendmail-compatible queue listing, the same as `postqueue -p`:
 *   mailq [-c config_dir] [--json]
 * With --json it prints postqueue -j's JSON lines instead.
 */
import { commandConfig, fatal, parseCommandLine, usageError } from '../src/queue/admin.js';
import { listQueue } from '../src/queue/listing.js';
import { queueDirectory } from '../src/config/index.js';
import { stoppedStoreProblem } from '../actors/master/store-check.js';

const PROG = 'mailq';
const USAGE = 'usage: mailq [-c config_dir] [--json]';

function main(): void {
  const parsed = parseCommandLine(PROG, USAGE, 'c:v');
  if (!parsed) return;
  if (parsed.positionals.length > 0) usageError(PROG, USAGE, `unexpected argument: ${parsed.positionals[0]}`);
  let dir: string | undefined;
  for (const [c, v] of parsed.opts) if (c === 'c') dir = v;
  const config = commandConfig(PROG, dir);
  const damaged = stoppedStoreProblem(queueDirectory(config));
  if (damaged) fatal(PROG, damaged);
  process.stdout.write(listQueue(config, parsed.long.has('json')));
}

try {
  main();
} catch (err) {
  fatal(PROG, (err as Error).message);
}
