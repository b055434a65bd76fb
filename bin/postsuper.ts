/**
 * postsuper — Postfix's postsuper(1):
 *   postsuper [-c config_dir] [-d queue_id] [-e queue_id] [-f queue_id] [-h queue_id]
 *             [-H queue_id] [-r queue_id] [-s] [-S] [-p] [-v] [--json] [queue...]
 * queue_id is an ID, ALL, or "-" (IDs from standard input). Safe while the server runs: when
 * the master's control socket answers, the operations are sent to it and qmgr does them (an
 * active message is changed once its deliveries in flight are back); otherwise the store is
 * changed directly. Requests run in this order: -d, -e, -f, -h, -H, -r; then -s.
 * -r keeps the queue ID (Postfix gives the message a new one when it passes through cleanup).
 *
 * postsuper [-c config_dir] --recover (Postactor's own): rebuilds a damaged queue store
 * (src/queue/recover.ts) with the mail system stopped. It lives here because postsuper is where a
 * Postfix administrator goes to repair the queue ("postsuper -s before start-up"), and a damaged
 * store is what -s finds and cannot fix in place.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { controlRequest } from '../src/runtime/control.js';
import { runningMaster } from '../actors/master/running.js';
import { queueDirectory } from '../src/config/index.js';
import { configureMaillog, flushMaillog, maillog } from '../src/log/maillog.js';
import {
  ADMIN_QUEUE_NAMES, EX_TEMPFAIL, commandConfig, fatal, parseCommandLine, masterAnswers, masterSocket, runAdmin, usageError,
  type AdminAction, type AdminCounts, type AdminRequest, type AdminResult,
} from '../src/queue/admin.js';
import { isQueueId } from '../src/queue/qid.js';
import { QueueStore, type StructureReport } from '../src/queue/store.js';
import { STORE_FILE, storeTreeProblem } from '../src/queue/integrity.js';
import { StoreBusyError } from '../src/queue/writer-lock.js';
import { hasStore, recoverStore } from '../src/queue/recover.js';
import type { QueueName } from '../src/queue/types.js';

const PROG = 'postsuper';
const USAGE = 'usage: postsuper [-c config_dir] [--recover (rebuild a damaged queue store)] [-d queue_id (delete)] [-e queue_id (expire)] [-f queue_id (expire and/or un-hold)] [-h queue_id (hold)] [-H queue_id (un-hold)] [-p (purge temporary files)] [-r queue_id (requeue)] [-s (structure fix)] [-S (redundant structure fix)] [-v (verbose)] [--json] [queue...]';

const FLAG_ACTIONS: Record<string, AdminAction> = { d: 'delete', e: 'expire', f: 'expire-release', h: 'hold', H: 'release', r: 'requeue' };
const ORDER: AdminAction[] = ['delete', 'expire', 'expire-release', 'hold', 'release', 'requeue'];

function warn(text: string): void {
  process.stderr.write(`${PROG}: warning: ${text}\n`);
}

let stdinIds: string[] | null = null;
function readStdinIds(): string[] {
  stdinIds ??= readFileSync(0, 'utf8').split(/\s+/).filter(Boolean);
  return stdinIds;
}

function plural(n: number): string {
  return `${n} message${n === 1 ? '' : 's'}`;
}

async function main(): Promise<void> {
  const parsed = parseCommandLine(PROG, USAGE, 'c:d:e:f:h:H:r:spSv', ['help', 'json', 'recover']);
  if (!parsed) return;
  const json = parsed.long.has('json');
  if (parsed.long.has('recover')) return recover(parsed.opts.find(([c]) => c === 'c')?.[1], json);
  let dir: string | undefined;
  let structure = false;
  let purge = false;
  const ids = new Map<AdminAction, string[] | 'ALL'>();
  for (const [c, v] of parsed.opts) {
    if (c === 'c') dir = v;
    else if (c === 's' || c === 'S') structure = true;
    else if (c === 'p') purge = true;
    else if (c === 'v') continue;
    else {
      const action = FLAG_ACTIONS[c]!;
      const prev = ids.get(action) ?? [];
      if (v === 'ALL' || prev === 'ALL') {
        ids.set(action, 'ALL');
        continue;
      }
      const given = v === '-' ? readStdinIds() : [v!];
      const ok = given.filter((id) => {
        if (isQueueId(id)) return true;
        warn(`invalid mail queue id: ${id}`);
        return false;
      });
      ids.set(action, [...prev, ...ok]);
    }
  }
  const queues: QueueName[] = [];
  for (const q of parsed.positionals) {
    if (!ADMIN_QUEUE_NAMES.includes(q as QueueName)) fatal(PROG, `invalid directory name: ${q}`);
    queues.push(q as QueueName);
  }
  // No operation at all: Postfix's default is -s -p.
  if (ids.size === 0 && !structure && !purge) structure = purge = true;

  const config = commandConfig(PROG, dir);
  const queueDir = queueDirectory(config);
  const requests: AdminRequest[] = ORDER.filter((a) => ids.has(a)).map((action) => ({ action, ids: ids.get(action)!, ...(queues.length ? { queues } : {}) }));

  let result: AdminResult = { events: [], counts: { deleted: 0, expired: 0, held: 0, released: 0, requeued: 0 } };
  let report: StructureReport | null = null;
  const storePresent = existsSync(join(queueDir, STORE_FILE));
  if (requests.length) {
    if (await masterAnswers(config)) {
      try {
        result = (await controlRequest(masterSocket(config), 'admin', requests, 600_000)) as AdminResult;
      } catch (err) {
        fatal(PROG, `queue operation failed: ${(err as Error).message}`);
      }
    } else if (await runningMaster(config)) {
      fatal(PROG, 'the mail system is running but does not answer on its control socket; try again', EX_TEMPFAIL);
    } else if (storePresent) {
      const logFile = config.get('maillog_file');
      if (logFile) configureMaillog({ file: logFile, hostname: config.get('myhostname'), syslogName: config.get('syslog_name') });
      const log = maillog('postsuper');
      const store = QueueStore.open(queueDir);
      try {
        result = await runAdmin(store, requests, (text) => logFile && log.info(text));
      } finally {
        flushMaillog();
        await store.close();
      }
    }
  }
  if (structure && storePresent) {
    // While the server runs, its qmgr checks and repairs the store: only one process may write
    // it at a time (lmdb-js loses writes when two processes take turns: docs/architecture.md).
    if (await masterAnswers(config)) {
      try {
        report = (await controlRequest(masterSocket(config), 'structure', null, 600_000)) as StructureReport;
      } catch (err) {
        fatal(PROG, `queue structure check failed: ${(err as Error).message}`);
      }
    } else if (await runningMaster(config)) {
      fatal(PROG, 'the mail system is running but does not answer on its control socket; try again', EX_TEMPFAIL);
    } else {
      // With the mail system stopped, -s also reads every page of the store (integrity.ts).
      const problem = storeTreeProblem(join(queueDir, STORE_FILE));
      if (problem) fatal(PROG, problem);
      const store = QueueStore.open(queueDir);
      try {
        report = await store.checkStructure(true);
      } finally {
        await store.close();
      }
    }
  }

  for (const e of result.events) process.stderr.write(`${PROG}: ${e.queueId}: ${e.event}\n`);
  for (const id of result.damaged ?? []) warn(`${id}: envelope does not decode -- moved to the corrupt queue`);
  const c: AdminCounts = result.counts;
  // Postfix 3.7 and later print each summary whenever its operation was asked for, also with
  // 0 messages ("postsuper: Deleted: 0 messages"); -f counts as both expire and release.
  const asked = (...actions: AdminAction[]) => actions.some((a) => ids.has(a));
  const lines: [boolean, number, string][] = [
    [asked('requeue'), c.requeued, 'Requeued'],
    [asked('delete'), c.deleted, 'Deleted'],
    [asked('expire', 'expire-release'), c.expired, 'Force-expired'],
    [asked('hold'), c.held, 'Placed on hold'],
    [asked('release', 'expire-release'), c.released, 'Released from hold'],
  ];
  for (const [wanted, n, what] of lines) if (wanted) process.stderr.write(`${PROG}: ${what}: ${plural(n)}\n`);
  if (report) {
    for (const id of report.corrupt) warn(`${id}: message content is missing -- moved to the corrupt queue`);
    for (const id of report.damaged) warn(`${id}: envelope does not decode -- moved to the corrupt queue`);
    if (report.danglingIndex + report.danglingDue > 0) process.stderr.write(`${PROG}: Removed index entries without a message: ${report.danglingIndex + report.danglingDue}\n`);
    if (report.danglingLogs > 0) process.stderr.write(`${PROG}: Removed status logs without a message: ${report.danglingLogs}\n`);
    if (report.reindexed > 0) process.stderr.write(`${PROG}: Re-indexed: ${plural(report.reindexed)}\n`);
    if (report.corrupt.length + report.damaged.length > 0) process.stderr.write(`${PROG}: Moved to the corrupt queue: ${plural(report.corrupt.length + report.damaged.length)}\n`);
  }
  if (json) {
    const out: Record<string, unknown> = { ...c };
    if (result.damaged?.length) out['damaged'] = result.damaged.length;
    if (report) out['structure'] = { danglingIndex: report.danglingIndex, danglingDue: report.danglingDue, reindexed: report.reindexed, corrupt: report.corrupt.length, damaged: report.damaged.length, danglingLogs: report.danglingLogs };
    process.stdout.write(JSON.stringify(out) + '\n');
  }
}

/** postsuper --recover: only with the mail system stopped (the store is replaced). */
async function recover(dir: string | undefined, json: boolean): Promise<void> {
  const config = commandConfig(PROG, dir);
  const queueDir = queueDirectory(config);
  if (await runningMaster(config)) fatal(PROG, 'the mail system is running: stop it before --recover', EX_TEMPFAIL);
  if (!hasStore(queueDir)) fatal(PROG, `no queue store to recover: ${join(queueDir, STORE_FILE)} does not exist`);
  const r = await recoverStore(queueDir);
  const logFile = config.get('maillog_file');
  if (logFile) configureMaillog({ file: logFile, hostname: config.get('myhostname'), syslogName: config.get('syslog_name') });
  const log = maillog('postsuper');
  const recovered = Object.values(r.recovered).reduce((a, b) => a + b, 0);
  const lines = [
    `Recovered: ${plural(recovered)} (${Object.entries(r.recovered).filter(([, n]) => n > 0).map(([q, n]) => `${q} ${n}`).join(', ') || 'none'})`,
    ...(r.foundByScan > 0 ? [`Placed on hold: ${plural(r.foundByScan)} found only by scanning the pages left (this may include mail already delivered: look with mailq, release with postsuper -H)`] : []),
    `Set aside in the corrupt queue: ${plural(r.damagedContent)} with damaged content, ${r.withoutEnvelope} content(s) without an envelope`,
    `Lost: ${r.unreadableEnvelopes} unreadable envelope(s), ${r.damagedPages} damaged page(s)`,
    `The damaged store is kept as ${r.keptAs}`,
  ];
  for (const l of lines) {
    process.stderr.write(`${PROG}: ${l}\n`);
    if (logFile) log.warn(`queue store recovery: ${l}`);
  }
  flushMaillog();
  if (json) process.stdout.write(JSON.stringify(r) + '\n');
}

// Another process writing the store (./src/queue/writer-lock.ts) is temporary: EX_TEMPFAIL, as Postfix's "try again".
main().catch((err: Error) => fatal(PROG, err.message, err instanceof StoreBusyError ? EX_TEMPFAIL : 1));
