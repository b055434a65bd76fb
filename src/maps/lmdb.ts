// lmdb:/path — a table built by postmap into "/path.lmdb" (an LMDB
// environment in a single file, plus LMDB's "/path.lmdb-lock").
//
// Format: the unnamed database, keys and values as UTF-8 bytes followed by a
// NUL byte (Postfix's convention on Linux, postmap -N); lookups also try the
// key without NUL (postmap -n tables). Keys are folded to lower case at build
// time unless postmap -f.
//
// Updating never writes into a live file: postmap builds a complete new
// environment under a temporary name and rename(2)s it over /path.lmdb, so a
// running reader sees either the old or the new table, never a half-built
// one. The readers check the file's identity (inode, mtime) on every lookup
// and reopen it when it changed, so a rebuilt table is used without restart.
//
// A reader opening the new file may share the (old) "-lock" file with readers
// still holding the old file, and LMDB picks the meta page by the lock file's
// transaction id; lmdb-js also opens the PREVIOUS snapshot when overlapping
// sync is on. The builder therefore commits the content twice, so both meta
// pages of a built file describe the complete table.
//
// Postfix's hash:, btree:, cdb:, dbm: and sdbm: name this same table
// (indexed.ts). A missing index is Postfix's "open database FILE: No such
// file or directory", plus the command that builds it when its source file is
// there; an index older than its source gets Postfix's warning.

import fs from 'node:fs';
import path from 'node:path';

import { open, type RootDatabase } from 'lmdb';

import { indexedNotice, tableNotice } from './indexed.js';
import { describeErrno, fileStamp } from './texthash.js';
import { NOT_FOUND, TableError, found, tableError, type InfoTable, type LookupResult } from './types.js';

type Db = RootDatabase<Buffer, Buffer>;

const NUL = Buffer.from([0]);

function openEnv(file: string, readOnly: boolean): Db {
  return open<Buffer, Buffer>({
    path: file,
    noSubdir: true,
    readOnly,
    keyEncoding: 'binary',
    encoding: 'binary',
    overlappingSync: false,
    cache: false,
    maxDbs: 1,
  } as never) as Db;
}

function keyBytes(key: string, withNul: boolean): Buffer {
  const b = Buffer.from(key, 'utf8');
  return withNul ? Buffer.concat([b, NUL]) : b;
}

function decode(b: Buffer | Uint8Array): string {
  let end = b.length;
  if (end > 0 && b[end - 1] === 0) end--;
  return Buffer.from(b.buffer, b.byteOffset, end).toString('utf8');
}

/** "/path" -> "/path.lmdb" */
export function lmdbFile(name: string): string {
  return `${name}.lmdb`;
}

/**
 * Writes entries as a complete new "/path.lmdb" (atomically, see above).
 * nul: store keys/values with a terminating NUL (default true; postmap -n: false).
 */
export function writeLmdb(name: string, entries: Iterable<[string, string]>, opts: { nul?: boolean } = {}): void {
  const nul = opts.nul ?? true;
  const target = lmdbFile(name);
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${Date.now()}.tmp`);
  const cleanup = () => {
    fs.rmSync(tmp, { force: true });
    fs.rmSync(`${tmp}-lock`, { force: true });
  };
  let db: Db | null = null;
  try {
    db = openEnv(tmp, false);
    const list = [...entries];
    const d = db;
    d.transactionSync(() => {
      for (const [k, v] of list) d.putSync(keyBytes(k, nul), keyBytes(v, nul));
    });
    // Second identical commit: both meta pages now describe the full table.
    d.transactionSync(() => {
      const first = list[0];
      if (first !== undefined) d.putSync(keyBytes(first[0], nul), keyBytes(first[1], nul));
    });
    d.close();
    db = null;
    try {
      const st = fs.statSync(target);
      fs.chmodSync(tmp, st.mode & 0o7777);
    } catch {
      // new table: keep the default mode
    }
    fs.renameSync(tmp, target);
  } catch (err) {
    try { db?.close(); } catch { /* ignore */ }
    cleanup();
    throw err;
  }
  fs.rmSync(`${tmp}-lock`, { force: true });
}

// lmdb-js must not open the same file (inode) twice in one process (the
// second open shares the first environment and its read transactions break),
// so all tables of a process share one handle per file version, refcounted.
interface Handle {
  id: string;
  db: Db;
  refs: number;
}

const handles = new Map<string, Handle>();

function inodeOf(file: string): string | null {
  const st = fs.statSync(file, { throwIfNoEntry: false, bigint: true });
  return st === undefined ? null : `${st.dev}:${st.ino}`;
}

function acquire(file: string): Handle {
  for (let attempt = 0; ; attempt++) {
    const id = inodeOf(file);
    if (id === null) throw new TableError(`open database ${file}: No such file or directory`);
    const h = handles.get(id);
    if (h !== undefined) {
      h.refs++;
      return h;
    }
    let db: Db;
    try {
      db = openEnv(file, true);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new TableError(`open database ${file}: ${typeof e.code === 'string' ? describeErrno(err) : e.message}`);
    }
    if (inodeOf(file) !== id && attempt < 3) {
      db.close(); // replaced while opening: open the new one
      continue;
    }
    const nh: Handle = { id, db, refs: 1 };
    handles.set(id, nh);
    return nh;
  }
}

function release(h: Handle): void {
  if (--h.refs > 0) return;
  if (handles.get(h.id) === h) handles.delete(h.id);
  try { h.db.close(); } catch { /* ignore */ }
}

function allEntries(db: Db): Map<string, string> {
  const out = new Map<string, string>();
  for (const { key, value } of db.getRange()) out.set(decode(key as Buffer), decode(value));
  return out;
}

/** All entries of "/path.lmdb" (decoded), for postmap -s/-i/-d. */
export function readLmdb(name: string): Map<string, string> {
  const h = acquire(lmdbFile(name));
  try {
    return allEntries(h.db);
  } finally {
    release(h);
  }
}

export interface LmdbTableOptions {
  /** Fold keys to lower case (default true; postmap -f: false). */
  fold?: boolean;
  /** The command that builds this table, named when the index is missing (default postmap). */
  builder?: 'postmap' | 'postalias';
}

export class LmdbTable implements InfoTable {
  readonly kind = 'fixed';
  readonly warnings: readonly string[] = [];
  readonly file: string;
  readonly foldsCase: boolean;
  private readonly builder: string;
  private handle: Handle | null = null;
  private stamp: string | null = null;

  /** spec is "type:name" as written (lmdb:, or one of Postfix's indexed types); name is the source file. */
  constructor(readonly spec: string, private readonly name: string, opts: LmdbTableOptions = {}) {
    this.file = lmdbFile(name);
    this.foldsCase = opts.fold ?? true;
    this.builder = opts.builder ?? 'postmap';
    const type = spec.slice(0, spec.indexOf(':'));
    if (type !== 'lmdb') tableNotice(`indexed:${spec}`, 'info', indexedNotice(type, name, this.file));
    this.reopen();
  }

  private reopen(): Db {
    const stamp = fileStamp(this.file);
    if (this.handle !== null && stamp === this.stamp) return this.handle.db;
    const old = this.handle;
    this.handle = null;
    this.stamp = null;
    if (old !== null) release(old);
    if (stamp === null && fs.existsSync(this.name)) {
      throw new TableError(`open database ${this.file}: No such file or directory (run "${this.builder} ${this.spec}" to build it from ${this.name})`);
    }
    this.handle = acquire(this.file);
    this.stamp = stamp;
    this.checkAge();
    return this.handle.db;
  }

  /** Postfix's warning for an index not rebuilt after its source file was edited. */
  private checkAge(): void {
    const src = fs.statSync(this.name, { throwIfNoEntry: false });
    const db = fs.statSync(this.file, { throwIfNoEntry: false });
    if (src !== undefined && db !== undefined && src.mtimeMs > db.mtimeMs) {
      tableNotice(`older:${this.file}:${this.stamp}`, 'warning', `database ${this.file} is older than source file ${this.name}`);
    }
  }

  lookup(key: string): LookupResult {
    const db = this.reopen();
    const k = this.foldsCase ? key.toLowerCase() : key;
    // LMDB rejects empty keys and keys longer than its maximum (~1978 bytes): such keys are never in a table.
    if (k === '' || Buffer.byteLength(k) > 1900) return NOT_FOUND;
    let v: Buffer | undefined;
    try {
      v = db.get(keyBytes(k, true)) ?? db.get(keyBytes(k, false));
    } catch (err) {
      throw tableError(this.file, null, `lookup error: ${(err as Error).message}`);
    }
    return v === undefined ? NOT_FOUND : found(decode(v));
  }

  entries(): Iterable<[string, string]> {
    return allEntries(this.reopen());
  }

  close(): void {
    if (this.handle !== null) release(this.handle);
    this.handle = null;
    this.stamp = null;
  }
}
