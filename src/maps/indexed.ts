// Postfix's indexed table types — hash:, btree:, cdb:, dbm:, sdbm: — read
// and built as Postactor's own indexed table, lmdb: (lmdb.ts).
//
// Every Postfix configuration says hash:/etc/aliases or btree:..., and the
// admin's habit is "postmap hash:FILE", "postalias hash:FILE", "newaliases".
// All five types are the same idea (a file of "key value" lines compiled into
// an index next to it), so they all name the lmdb table FILE.lmdb. The index
// is deliberately never Postfix's own file (FILE.db, FILE.cdb, FILE.dir/.pag):
// Postactor pointed at /etc/postfix must neither read Berkeley DB files it
// cannot parse nor clobber the files a running Postfix reads.
//
// Because that substitution is not what the admin wrote, each thread (an
// actor: Postactor's equivalent of a Postfix daemon process) logs one
// informational line the first time it opens such a table, and a warning when
// the index is older than its source file (as Postfix's dict_db does).
// Command-line tools (postmap, postalias) stay quiet unless they install a
// sink with setTableNotices().

import { isMainThread, workerData } from 'node:worker_threads';

import { maillog } from '../log/maillog.js';

/** Postfix's indexed types and the index file Postfix itself would use (named in the notice). */
export const INDEXED_TYPES: ReadonlyMap<string, string> = new Map([
  ['btree', '.db'],
  ['cdb', '.cdb'],
  ['dbm', '.dir/.pag'],
  ['hash', '.db'],
  ['sdbm', '.dir/.pag'],
]);

export type NoticeLevel = 'info' | 'warning';
export type NoticeSink = (level: NoticeLevel, text: string) => void;

let sink: NoticeSink | null | undefined;
const noticed = new Set<string>();

/** Directs this thread's table notices to fn (null: drop them); the default is described above. */
export function setTableNotices(fn: NoticeSink | null): void {
  sink = fn;
}

/**
 * The default sink: in an actor thread, the maillog under the thread's program
 * name (the master.cf command of its service, as Postfix logs smtpd for the
 * smtp service); in the main thread (the master, the command-line tools),
 * nothing — the actors that use the tables log it themselves.
 */
function defaultSink(): NoticeSink | null {
  if (isMainThread) return null;
  const data = workerData as { service?: unknown; config?: { services?: { name: string; command: string }[] } } | undefined;
  const service = typeof data?.service === 'string' ? data.service : 'postactor';
  const command = data?.config?.services?.find((s) => s.name === service)?.command ?? service;
  const log = maillog(command);
  return (level, text) => (level === 'info' ? log.info(text) : log.warn(text));
}

/** Logs text once per thread per key (see the header). */
export function tableNotice(key: string, level: NoticeLevel, text: string): void {
  if (noticed.has(key)) return;
  noticed.add(key);
  if (sink === undefined) sink = defaultSink();
  sink?.(level, text);
}

/** The one line that explains what an indexed Postfix type means here. */
export function indexedNotice(type: string, name: string, file: string): string {
  return `${type}:${name} is read as Postactor's lmdb table ${file} (built by "postmap ${type}:${name}" or postalias; Postfix's ${name}${INDEXED_TYPES.get(type) ?? ''} is not used)`;
}

/** Logs text every time (a table's runtime warnings: a server down, a failed query), to the same sink. */
export function tableLog(level: NoticeLevel, text: string): void {
  if (sink === undefined) sink = defaultSink();
  sink?.(level, text);
}
