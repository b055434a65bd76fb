/**
 * mailq — the Sendmail-compatible queue listing, the same as `postqueue -p`:
 *   mailq [-c config_dir] [--json]
 * With --json it prints postqueue -j's JSON lines instead. It imports only what a listing needs
 * (monitoring scripts run it every minute): see src/queue/listing-config.ts.
 */
import { fatal, parseCommandLine, usageError, writeStdout } from '../src/queue/command-line.js';
import { listQueue } from '../src/queue/listing.js';
import { listingConfig } from '../src/queue/listing-config.js';

const PROG = 'mailq';
const USAGE = 'usage: mailq [-c config_dir] [--json]';

async function main(): Promise<void> {
  const parsed = parseCommandLine(PROG, USAGE, 'c:v');
  if (!parsed) return;
  if (parsed.positionals.length > 0) usageError(PROG, USAGE, `unexpected argument: ${parsed.positionals[0]}`);
  let dir: string | undefined;
  for (const [c, v] of parsed.opts) if (c === 'c') dir = v;
  writeStdout(await listQueue(await listingConfig(PROG, dir), parsed.long.has('json'), stoppedStoreCheck));
}

main().catch((err: Error) => fatal(PROG, err.message));

/** A stopped system's store gets the deep check before it is read (a damaged page is a fatal message, not a crash). */
async function stoppedStoreCheck(queueDir: string): Promise<void> {
  const { stoppedStoreProblem } = await import('../actors/master/store-check.js');
  const damaged = stoppedStoreProblem(queueDir);
  if (damaged) fatal(PROG, damaged);
}
