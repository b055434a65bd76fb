// The commands postmap, postalias and newaliases (bin/*.ts are thin wrappers).
//
// Postactor builds one indexed table format, lmdb: (FILE.lmdb). Postfix's
// hash:, btree:, cdb:, dbm: and sdbm: name that same table (indexed.ts), so
// "postmap hash:FILE" and "postalias hash:/etc/aliases" build FILE.lmdb —
// never Postfix's FILE.db. A bare FILE means lmdb:FILE, the same file as
// $default_database_type:FILE. Queries (-q) work with every table type.
// Exit status: 0 ok / found, 1 not found or fatal error ("NAME: fatal: ..."),
// 64 usage error (bad flags; usage on stderr).

import { manual } from '../cli/manual.js';
import fs from 'node:fs';

import { loadConfig } from '../config/index.js';
import { parseAliases } from './aliases.js';
import { TABLE_TYPES, closeSharedTables, isIndexedType, mainProxymap, openTable, setTableNotices, unsupportedTypeMessage } from './index.js';
import { lmdbFile, readLmdb, writeLmdb } from './lmdb.js';
import { parseKeyValues, readTableFile, type KeyValueOptions, type ParsedKeyValues } from './texthash.js';
import { TableError, type InfoTable, type LookupResult } from './types.js';

export const EX_USAGE = 64;

class UsageError extends Error {}
class Fatal extends Error {}

interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  readStdin: () => string;
}

const defaultIo: Io = {
  stdout: (s) => { fs.writeSync(1, s); },
  stderr: (s) => { fs.writeSync(2, s); },
  readStdin: () => {
    try {
      return fs.readFileSync(0, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN' || (err as NodeJS.ErrnoException).code === 'EOF') return '';
      throw err;
    }
  },
};

/** Minimal getopt(3): "ab:c" — letters followed by ':' take an argument. Stops at "--" or the first operand. */
function getopt(args: string[], spec: string): { opts: [string, string | true][]; operands: string[] } {
  const opts: [string, string | true][] = [];
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') { i++; break; }
    if (!a.startsWith('-') || a === '-') break;
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      const at = spec.indexOf(c);
      if (at < 0 || c === ':') throw new UsageError(`invalid option -- '${c}'`);
      if (spec[at + 1] === ':') {
        const v = j + 1 < a.length ? a.slice(j + 1) : args[++i];
        if (v === undefined) throw new UsageError(`option requires an argument -- '${c}'`);
        opts.push([c, v]);
        break;
      }
      opts.push([c, true]);
    }
  }
  return { opts, operands: args.slice(i) };
}

interface MapCommand {
  prog: 'postmap' | 'postalias';
  usage: string;
  help: string;
  parse: (text: string, file: string, opts: KeyValueOptions, into?: Map<string, string>) => ParsedKeyValues;
  /** postalias adds the sendmail-compatible "@" -> "@" entry. */
  extra?: [string, string];
}

const POSTMAP: MapCommand = {
  prog: 'postmap',
  usage: 'usage: postmap [-c config_dir] [-N|-n] [-f] [-i] [-o] [-r] [-s] [-v] [-w] [-q key|-d key] [type:]file ...',
  help: `Builds or queries Postactor lookup tables (like Postfix's postmap(1)).

  postmap [type:]file         build file.lmdb from the "key value" text file
                              (type lmdb, hash, btree, cdb, dbm or sdbm: all build
                              file.lmdb; Postfix's file.db is never read or written)
                              (atomically: a running server never sees a half-built table)
  postmap -q key map ...      print the value of key from the first map that has it
                              (exit 1 if none has it); "-q -" reads keys from stdin
                              and prints "key<TAB>value" for each found key
  postmap -s map ...          print all "key<TAB>value" entries
  postmap -d key map ...      delete key from lmdb tables ("-d -": keys from stdin)

  -c dir   configuration directory (validated)      -f  no case folding of keys
  -i       incremental: add "key value" lines from stdin to an existing table
  -N / -n  store keys and values with / without a terminating NUL (default -N)
  -r       a duplicate key replaces the earlier entry (default: keep the first, warn)
  -w       do not warn about duplicate keys          -o, -v  accepted, no effect

Types for queries: ${TABLE_TYPES.join(', ')}.
`,
  parse: parseKeyValues,
};

const POSTALIAS: MapCommand = {
  prog: 'postalias',
  usage: 'usage: postalias [-c config_dir] [-N|-n] [-f] [-i] [-o] [-r] [-s] [-v] [-w] [-q key|-d key] [type:]file ...',
  help: `Builds or queries Postactor alias databases (like Postfix's postalias(1)).

  postalias [type:]file       build file.lmdb from an aliases(5) file ("name: value, value");
                              hash:, btree:, cdb:, dbm:, sdbm: and lmdb: all build file.lmdb
  postalias -q key map ...    print the value of key ("-q -": keys from stdin)
  postalias -s map ...        print all entries
  postalias -d key map ...    delete key from lmdb tables

Options as for postmap (-c -f -i -N -n -o -r -v -w).
`,
  parse: parseAliases,
  extra: ['@', '@'],
};

function splitMap(operand: string): { type: string; name: string; spec: string } {
  const m = /^([A-Za-z0-9_-]+):(.*)$/.exec(operand);
  const type = m ? m[1]! : 'lmdb';
  const name = m ? m[2]! : operand;
  if (!TABLE_TYPES.includes(type)) throw new Fatal(unsupportedTypeMessage(type));
  return { type, name, spec: `${type}:${name}` };
}

interface Flags {
  fold: boolean;
  nul: boolean;
  replace: boolean;
  quiet: boolean;
  incremental: boolean;
  query?: string;
  del?: string;
  dump: boolean;
}

function stdinKeys(io: Io): string[] {
  return io.readStdin().split('\n').map((l) => l.replace(/\r$/, '').trim()).filter((l) => l !== '');
}

function openForQuery(cmd: MapCommand, operand: string, flags: Flags): InfoTable {
  const { spec } = splitMap(operand);
  return openTable(spec, { fold: flags.fold, builder: cmd.prog });
}

function query(cmd: MapCommand, io: Io, operands: string[], flags: Flags): number | Promise<number> {
  const tables = operands.map((o) => openForQuery(cmd, o, flags));
  // File tables answer at once; database and server tables (pgsql:, proxy: …) asynchronously,
  // and only postmapRun() (bin/postmap) waits for them.
  const find = (key: string): string | undefined | Promise<string | undefined> => {
    for (let i = 0; i < tables.length; i++) {
      const r = tables[i]!.lookup(key);
      if (r instanceof Promise) return findAsync(key, i, r);
      if (r.found) return r.value;
    }
    return undefined;
  };
  const findAsync = async (key: string, from: number, first: Promise<LookupResult>): Promise<string | undefined> => {
    for (let i = from; i < tables.length; i++) {
      const r = i === from ? await first : await tables[i]!.lookup(key);
      if (r.found) return r.value;
    }
    return undefined;
  };
  const keys = flags.query === '-' ? stdinKeys(io) : [flags.query!];
  let any = false;
  const show = (key: string, v: string | undefined) => {
    if (v === undefined) return;
    any = true;
    io.stdout(flags.query === '-' ? `${key}\t${v}\n` : `${v}\n`);
  };
  for (let k = 0; k < keys.length; k++) {
    const v = find(keys[k]!);
    if (v instanceof Promise) {
      return (async () => {
        try {
          show(keys[k]!, await v);
          for (const key of keys.slice(k + 1)) show(key, await find(key));
        } catch (e) {
          throw e instanceof TableError ? new Fatal(`query error: ${e.message}`) : e;
        } finally {
          closeSharedTables();
        }
        return any ? 0 : 1;
      })();
    }
    show(keys[k]!, v);
  }
  return any ? 0 : 1;
}

function dump(cmd: MapCommand, io: Io, operands: string[], flags: Flags): number {
  for (const o of operands) {
    const t = openForQuery(cmd, o, flags);
    if (t.entries === undefined) throw new Fatal(`table ${t.spec}: sequence operation is not supported`);
    for (const [k, v] of t.entries()) io.stdout(`${k}\t${v}\n`);
    t.close?.();
  }
  return 0;
}

function requireLmdb(operand: string, what: string): string {
  const { type, name, spec } = splitMap(operand);
  if (!isIndexedType(type)) throw new Fatal(`${spec}: cannot ${what} a ${type}: table (postmap builds and updates lmdb:, hash:, btree:, cdb:, dbm: and sdbm: tables; ${type}: tables are read from their source file)`);
  return name;
}

function del(cmd: MapCommand, io: Io, operands: string[], flags: Flags): number {
  const keys = flags.del === '-' ? stdinKeys(io) : [flags.del!];
  let deleted = false;
  for (const o of operands) {
    const name = requireLmdb(o, 'delete from');
    const map = readLmdb(name);
    let changed = false;
    for (const k of keys) {
      if (map.delete(flags.fold ? k.toLowerCase() : k)) changed = true;
    }
    if (changed) {
      writeLmdb(name, map, { nul: flags.nul });
      deleted = true;
    }
  }
  return deleted ? 0 : 1;
}

function build(cmd: MapCommand, io: Io, operands: string[], flags: Flags): number {
  const kvOpts: KeyValueOptions = { fold: flags.fold, replace: flags.replace, quiet: flags.quiet };
  for (const o of operands) {
    const name = requireLmdb(o, 'build');
    let parsed: ParsedKeyValues;
    if (flags.incremental) {
      const existing = fs.existsSync(lmdbFile(name)) ? readLmdb(name) : new Map<string, string>();
      if (cmd.extra) existing.delete(cmd.extra[0]);
      parsed = cmd.parse(io.readStdin(), '(stdin)', kvOpts, existing);
    } else {
      parsed = cmd.parse(readTableFile(name), name, kvOpts);
    }
    for (const w of parsed.warnings) io.stderr(`${cmd.prog}: warning: ${w}\n`);
    if (cmd.extra) parsed.map.set(cmd.extra[0], cmd.extra[1]);
    writeLmdb(name, parsed.map, { nul: flags.nul });
  }
  return 0;
}

function runMapCommand(cmd: MapCommand, args: string[], io: Io): number | Promise<number> {
  if (args.includes('--help')) {
    io.stdout(manual(cmd.prog, cmd.usage) ?? `${cmd.usage}\n\n${cmd.help}`);
    return 0;
  }
  const { opts, operands } = getopt(args, 'c:d:fiNnoq:rsvw');
  const flags: Flags = { fold: true, nul: true, replace: false, quiet: false, incremental: false, dump: false };
  let configDir: string | undefined;
  for (const [o, v] of opts) {
    switch (o) {
      case 'c': configDir = v as string; break;
      case 'd': flags.del = v as string; break;
      case 'f': flags.fold = false; break;
      case 'i': flags.incremental = true; break;
      case 'N': flags.nul = true; break;
      case 'n': flags.nul = false; break;
      case 'q': flags.query = v as string; break;
      case 'r': flags.replace = true; break;
      case 's': flags.dump = true; break;
      case 'w': flags.quiet = true; break;
      default: break; // -o, -v
    }
  }
  const modes = [flags.query !== undefined, flags.del !== undefined, flags.dump, flags.incremental].filter(Boolean).length;
  if (modes > 1) throw new UsageError('specify only one of -q, -d, -s and -i');
  if (operands.length === 0) throw new UsageError('missing table name');
  const config = loadConfig(configDir); // read (and checked) as Postfix's postmap reads main.cf: -c, MAIL_CONFIG, … (locate.ts)
  // proxy: tables are looked up in this process, refused unless proxy_read_maps lists them (as proxymap would).
  mainProxymap((text) => io.stderr(`${cmd.prog}: warning: proxymap: ${text}\n`)).configure(config.get('proxy_read_maps'));
  // Postfix's postmap prints a table's warnings (an index older than its source) on stderr.
  setTableNotices((level, text) => { if (level === 'warning') io.stderr(`${cmd.prog}: warning: ${text}\n`); });
  if (flags.query !== undefined) return query(cmd, io, operands, flags);
  if (flags.dump) return dump(cmd, io, operands, flags);
  if (flags.del !== undefined) return del(cmd, io, operands, flags);
  return build(cmd, io, operands, flags);
}

const NEWALIASES_USAGE = 'usage: newaliases [-c config_dir] [-v]';

function runNewaliases(args: string[], io: Io): number {
  if (args.includes('--help')) {
    io.stdout(manual('newaliases', NEWALIASES_USAGE) ?? `${NEWALIASES_USAGE}

Rebuilds the alias databases named by alias_database in main.cf (like
Postfix's newaliases(1), i.e. postalias on each of them). The default is
Postfix's, hash:/etc/aliases, which builds /etc/aliases.lmdb (never
/etc/aliases.db); hash:, btree:, cdb:, dbm:, sdbm: and lmdb: can be built.
  -c dir   configuration directory (default: $MAIL_CONFIG, $POSTACTOR_CONFIG, /etc/postactor, else the embedded default)
  -v       accepted, no effect
`);
    return 0;
  }
  const { opts, operands } = getopt(args, 'c:C:v');
  if (operands.length > 0) throw new UsageError(`unexpected argument "${operands[0]}"`);
  let dir: string | undefined;
  for (const [o, v] of opts) if (o === 'c' || o === 'C') dir = v as string;
  const config = loadConfig(dir);
  const value = config.get('alias_database');
  const maps = value.split(/[\s,]+/).filter((s) => s !== '');
  // Check every entry before building any, so a bad one leaves all tables as they were.
  for (const m of maps) {
    try {
      requireLmdb(m, 'build');
    } catch (err) {
      throw new Fatal(`alias_database = ${value}: ${(err as Error).message}`);
    }
  }
  for (const m of maps) build(POSTALIAS, io, [m], { fold: true, nul: true, replace: false, quiet: false, incremental: false, dump: false });
  return 0;
}

function failure(prog: string, usage: string, io: Io, err: unknown): number {
  if (err instanceof UsageError) {
    io.stderr(`${prog}: ${err.message}\n${usage}\n`);
    return EX_USAGE;
  }
  const msg = err instanceof Error ? err.message : String(err);
  io.stderr(msg.split('\n').map((l) => `${prog}: fatal: ${l}\n`).join(''));
  return 1;
}

function guard(prog: string, usage: string, io: Io, fn: () => number | Promise<number>): number {
  try {
    const r = fn();
    if (r instanceof Promise) {
      r.catch(() => undefined);
      throw new Fatal('this table answers asynchronously: use postmapRun()');
    }
    return r;
  } catch (err) {
    return failure(prog, usage, io, err);
  }
}

async function guardAsync(prog: string, usage: string, io: Io, fn: () => number | Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    return failure(prog, usage, io, err);
  }
}

/** postmap for file tables only (answers synchronously; the tests' in-process runner). */
export function postmapMain(args: string[], io: Io = defaultIo): number {
  return guard('postmap', POSTMAP.usage, io, () => runMapCommand(POSTMAP, args, io));
}

/** postmap for every table type: database and server tables (pgsql:, memcache:, proxy: …) answer asynchronously. */
export function postmapRun(args: string[], io: Io = defaultIo): Promise<number> {
  return guardAsync('postmap', POSTMAP.usage, io, () => runMapCommand(POSTMAP, args, io));
}

export function postaliasMain(args: string[], io: Io = defaultIo): number {
  return guard('postalias', POSTALIAS.usage, io, () => runMapCommand(POSTALIAS, args, io));
}

/** postalias for every table type (see postmapRun). */
export function postaliasRun(args: string[], io: Io = defaultIo): Promise<number> {
  return guardAsync('postalias', POSTALIAS.usage, io, () => runMapCommand(POSTALIAS, args, io));
}

export function newaliasesMain(args: string[], io: Io = defaultIo): number {
  return guard('newaliases', NEWALIASES_USAGE, io, () => runNewaliases(args, io));
}

export { TableError };
