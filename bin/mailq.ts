/**
 * mailq — the Sendmail-compatible queue listing, the same as `postqueue -p`:
 *   mailq [-C config_file|config_dir] [-c config_dir] [-v] [--json]
 * Postfix's mailq is its sendmail in -bp mode, so it takes sendmail's -C (main.cf or its
 * directory); -c is postqueue's spelling, kept for scripts that use it.
 * With --json it prints postqueue -j's JSON lines instead. It imports only what a listing needs
 * (monitoring scripts run it every minute): see src/queue/listing-config.ts.
 */
import { basename, dirname } from 'node:path';
import { fatal, parseCommandLine, usageError, writeStdout } from '../src/queue/command-line.js';
import { listQueue } from '../src/queue/listing.js';
import { listingConfig } from '../src/queue/listing-config.js';

const PROG = 'mailq';
const USAGE = 'usage: mailq [-C config_file] [-c config_dir] [-v] [--json]';

async function main(): Promise<void> {
  const parsed = parseCommandLine(PROG, USAGE, 'C:c:v');
  if (!parsed) return;
  if (parsed.positionals.length > 0) usageError(PROG, USAGE, `unexpected argument: ${parsed.positionals[0]}`);
  let dir: string | undefined;
  for (const [c, v] of parsed.opts) {
    if (c === 'c') dir = v;
    else if (c === 'C' && v !== undefined) dir = basename(v) === 'main.cf' ? dirname(v) : v;
  }
  const config = await listingConfig(PROG, dir);
  await queueAcl(config);
  writeStdout(await listQueue(config, parsed.long.has('json'), stoppedStoreCheck));
}

main().catch((err: Error) => fatal(PROG, err.message));

/**
 * authorized_mailq_users: "User NAME(UID) is not allowed to view the mail queue", exit 77
 * (EX_NOPERM). Postfix's mailq is sendmail -bp, which runs `postqueue -p`, and postqueue refuses:
 * the message reads "postqueue: fatal: …" there, so it does here.
 */
async function queueAcl(config: { acl?: string; mailOwner?: string }): Promise<void> {
  if (!config.acl || config.acl.trim().toLowerCase().startsWith('static:')) return;
  const { queueAclRefusal } = await import('../src/system/user-acl.js');
  const refusal = await queueAclRefusal('mailq', config.acl, config.mailOwner ?? 'postfix');
  if (refusal) fatal('postqueue', refusal, 77);
}

/** A stopped system's store gets the deep check before it is read (a damaged page is a fatal message, not a crash). */
async function stoppedStoreCheck(queueDir: string): Promise<void> {
  const { stoppedStoreProblem } = await import('../actors/master/store-check.js');
  const damaged = stoppedStoreProblem(queueDir);
  if (damaged) fatal(PROG, damaged);
}
