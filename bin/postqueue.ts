/**
 * postqueue — Postfix's postqueue(1):
 *   postqueue [-c config_dir] -p | -j | -f | -s site | -i queue_id
 * -p (mailq) and -j read the queue store directly and read-only, so they work with the server
 * up or down; -f and -i ask the running master (control socket) to have qmgr retry now, -s
 * asks the flush service through it (fast_flush_domains decides which destinations it takes).
 * -p and -j import only what a listing needs (src/queue/listing-config.ts); the configuration
 * loader and the control-socket client are loaded for -f, -s and -i.
 */
import type { Config } from '../src/config/index.js';
import { EX_UNAVAILABLE, fatal, parseCommandLine, usageError, writeStdout } from '../src/queue/command-line.js';
import { listQueue } from '../src/queue/listing.js';
import { listingConfig } from '../src/queue/listing-config.js';
import { isQueueId } from '../src/queue/qid.js';

const PROG = 'postqueue';
const USAGE = 'usage: postqueue [-c config_dir] [--json] -f | postqueue -i queueid | postqueue -j | postqueue -p | postqueue -s site';

async function flush(config: Config, cmd: string, args: unknown, json: boolean): Promise<void> {
  const [{ masterSocket }, { controlRequest }] = await Promise.all([import('../src/queue/admin.js'), import('../src/runtime/control.js')]);
  let value: unknown;
  try {
    value = await controlRequest(masterSocket(config), cmd, args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || /timeout/.test(e.message)) fatal(PROG, 'Cannot flush mail queue - mail system is down', EX_UNAVAILABLE);
    fatal(PROG, `flush: ${e.message}`);
  }
  if (json) process.stdout.write(JSON.stringify({ ok: true, ...(value && typeof value === 'object' ? value : {}) }) + '\n');
}

/**
 * -s site: the flush service's send_site, through the master (Postfix's flush_site()), with
 * Postfix's words for each status.
 */
async function flushSite(config: Config, site: string, json: boolean): Promise<void> {
  const [{ masterSocket }, { controlRequest }] = await Promise.all([import('../src/queue/admin.js'), import('../src/runtime/control.js')]);
  let status: string;
  try {
    status = ((await controlRequest(masterSocket(config), 'flush-site', { site })) as { status?: string })?.status ?? 'fail';
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || /timeout/.test(e.message)) fatal(PROG, 'Cannot flush mail queue - mail system is down', EX_UNAVAILABLE);
    fatal(PROG, `flush: ${e.message}`);
  }
  switch (status) {
    case 'ok':
      if (json) process.stdout.write(JSON.stringify({ ok: true }) + '\n');
      return;
    case 'bad': return fatal(PROG, `Invalid request: "${site}"`, EX_USAGE_DATA);
    case 'deny': return fatal(PROG, `Flush service is not configured for destination "${site}"`, EX_UNAVAILABLE);
    default: return fatal(PROG, 'Cannot flush mail queue - mail system is down', EX_UNAVAILABLE);
  }
}

async function main(): Promise<void> {
  const parsed = parseCommandLine(PROG, USAGE, 'c:fi:jps:v');
  if (!parsed) return;
  const json = parsed.long.has('json');
  let dir: string | undefined;
  const modes: [string, string | undefined][] = [];
  for (const [c, v] of parsed.opts) {
    if (c === 'c') dir = v;
    else if (c !== 'v') modes.push([c, v]);
  }
  if (parsed.positionals.length > 0) usageError(PROG, USAGE, `unexpected argument: ${parsed.positionals[0]}`);
  if (modes.length === 0 && json) modes.push(['j', undefined]);
  if (modes.length !== 1) usageError(PROG, USAGE);
  const [mode, value] = modes[0]!;
  if (mode === 'p' || mode === 'j') {
    const listing = await listingConfig(PROG, dir);
    await queueAcl('mailq', listing.acl, listing.mailOwner);
    writeStdout(await listQueue(listing, mode === 'j' || json, stoppedStoreCheck));
    return;
  }
  const config = (await import('../src/queue/admin.js')).commandConfig(PROG, dir);
  await queueAcl('flush', config.get('authorized_flush_users'), config.get('mail_owner'));
  switch (mode) {
    case 'f':
      return flush(config, 'flush', undefined, json);
    case 's': {
      const site = value!;
      const { validDestination } = await import('../src/flush/destination.js');
      if (!validDestination(site)) fatal(PROG, `Cannot flush mail queue - invalid destination: "${site.slice(0, 100)}${site.length > 100 ? '...' : ''}"`, EX_USAGE_DATA);
      return flushSite(config, site, json);
    }
    case 'i':
      if (!isQueueId(value!)) fatal(PROG, `Cannot flush queue ID - invalid name: "${value!.slice(0, 100)}"`, EX_USAGE_DATA);
      return flush(config, 'flush-some', { queueId: value }, json);
  }
}

/** authorized_mailq_users / authorized_flush_users: Postfix's refusal, exit 77 (EX_NOPERM). */
async function queueAcl(kind: 'mailq' | 'flush', acl: string | undefined, mailOwner: string | undefined): Promise<void> {
  if (!acl || acl.trim().toLowerCase().startsWith('static:')) return;
  const { queueAclRefusal } = await import('../src/system/user-acl.js');
  const refusal = await queueAclRefusal(kind, acl, mailOwner ?? 'postfix');
  if (refusal) fatal(PROG, refusal, 77);
}

/** EX_DATAERR? Postfix exits EX_USAGE (64) for an invalid destination or queue ID. */
const EX_USAGE_DATA = 64;

main().catch((err: Error) => fatal(PROG, err.message));

/** A stopped system's store gets the deep check before it is read (a damaged page is a fatal message, not a crash). */
async function stoppedStoreCheck(queueDir: string): Promise<void> {
  const { stoppedStoreProblem } = await import('../actors/master/store-check.js');
  const damaged = stoppedStoreProblem(queueDir);
  if (damaged) fatal(PROG, damaged);
}
