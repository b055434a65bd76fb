/**
 * Node's on-disk compile cache (module.enableCompileCache): V8's code for the modules a thread
 * or a command loads, kept between starts. Two users:
 *
 * - the server's threads: every pool thread and supervised worker loads its service's module
 *   graph (100–150 modules) when it starts, and a cold pool's first request waits for that
 *   (bench/threads). Master gives each thread the cache through its environment
 *   (NODE_COMPILE_CACHE in the Worker's `env`, read by Node when the thread boots, before any of
 *   its modules load); a thread flushes what it compiled once its modules are loaded
 *   (flushCompileCacheSoon), so the next thread of any service reads it, not only the next
 *   server start (Node writes the cache only when an instance ends).
 * - master's own modules (bin/postactor.ts, for the commands that load master's code), and the
 *   short-lived commands that load a big library: mailq and postqueue -p load LMDB (with
 *   msgpackr) only to list a queue.
 *
 * Where: <tmpdir>/postactor-compile-cache-<uid>, mode 0700, created when missing, one per user
 * and shared by that user's server and commands (the same code). Not the checkout (it may be
 * read-only, or in a 0700 directory of another user) and not the queue (a fresh queue would start
 * cold, and commands of other users read the queue's directories). A V8 code cache is code, so
 * the directory is used only when it is this user's alone: when it exists as anything else
 * (another owner, a symlink, group or other write permission) or cannot be made, there is no
 * cache and threads only start slower; the server says so once in the maillog. Node's default
 * place (one directory in /tmp for every user) is not used for that reason. Node checks each
 * entry (hashes of the source and of the cached data, written to a temporary file and renamed),
 * so servers and commands of the same user can share the directory.
 *
 * An operator's NODE_COMPILE_CACHE (a place of their choosing) or NODE_DISABLE_COMPILE_CACHE
 * wins: threads inherit the master's environment then, as they do without this module.
 */
import { join } from 'node:path';

/** The variable Node reads when a thread or process starts. */
const ENV = 'NODE_COMPILE_CACHE';

/**
 * This user's cache directory, made if missing, or why it cannot be used. `base` is the
 * directory it lives in (default: os.tmpdir()).
 */
export function compileCacheDirectory(base?: string): { dir: string } | { problem: string } {
  if (process.getuid === undefined) return { problem: 'no POSIX user ids here' };
  // Not ES imports of node:fs / node:os: see src/config/locate.ts (commands start faster).
  const fs = process.getBuiltinModule('node:fs');
  const uid = process.getuid();
  const dir = join(base ?? process.getBuiltinModule('node:os').tmpdir(), `postactor-compile-cache-${uid}`);
  try {
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const st = fs.lstatSync(dir);
    if (st.isSymbolicLink()) return { problem: `${dir} is a symbolic link` };
    if (!st.isDirectory()) return { problem: `${dir} is not a directory` };
    if (st.uid !== uid) return { problem: `${dir} is owned by uid ${st.uid}, not ${uid}` };
    if ((st.mode & 0o077) !== 0) return { problem: `${dir} is accessible to others (mode ${(st.mode & 0o7777).toString(8)})` };
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
    return { dir };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { problem: `${dir}: ${e.code ?? e.message}` };
  }
}

let tried = false;

/** Commands: enables the cache for the modules loaded from now on; does nothing when it cannot be safe. */
export function enableCommandCompileCache(): void {
  if (tried) return;
  tried = true;
  const where = compileCacheDirectory();
  if (!('dir' in where)) return; // no cache: a slower start, nothing else
  try {
    process.getBuiltinModule('node:module').enableCompileCache(where.dir);
  } catch {
    // No cache: a slower start, nothing else.
  }
}

/** The cache master's threads start with (null: none, or the master's environment decides). */
let threadCache: string | null = null;

/**
 * Master, at start: its threads get the cache from now on. Returns a line for the maillog when
 * there is none (null when there is one, or when the operator's environment decides).
 */
export function useThreadCompileCache(base?: string): string | null {
  threadCache = null;
  if (process.env[ENV] || process.env['NODE_DISABLE_COMPILE_CACHE']) return null;
  const where = compileCacheDirectory(base);
  if (!('dir' in where)) return `compile cache not used: ${where.problem}; threads start without it`;
  threadCache = where.dir;
  return null;
}

/** The `env` option of a new actor thread (src/runtime/pool.ts, supervisor.ts). */
export function threadEnv(): { env?: NodeJS.ProcessEnv } {
  return threadCache === null ? {} : { env: { ...process.env, [ENV]: threadCache } };
}

/**
 * In a thread or master, once its modules are loaded: writes what it compiled to the cache soon,
 * where Node would only at the thread's or process's end (a pool thread lives until max_idle,
 * master until stopped), so that the next thread or start finds it. Only code not cached yet is
 * written; nothing without a cache.
 */
export function flushCompileCacheSoon(): void {
  const mod = process.getBuiltinModule('node:module');
  if (mod.getCompileCacheDir() === undefined) return;
  // After the start's own work (the ready message, the first requests): it writes files.
  setTimeout(() => mod.flushCompileCache(), 200).unref();
}
