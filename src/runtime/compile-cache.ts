/**
 * Node's on-disk compile cache (module.enableCompileCache) for the short-lived commands that
 * load a big library: mailq and postqueue -p load LMDB (with msgpackr) only to list a queue,
 * and compiling those sources is a good part of their start-up. Later loads reuse V8's code.
 *
 * A V8 code cache is code, so only a directory that is this user's alone is used:
 * <tmpdir>/postactor-compile-cache-<uid>, mode 0700, created when missing. When it exists as
 * anything else (another owner, a symlink, group or other write permission) there is no cache,
 * and the command only starts slower. Node's default place (one directory in /tmp for every
 * user) is not used for that reason.
 */
import { join } from 'node:path';

let tried = false;

/** Enables the cache for the modules loaded from now on; does nothing when it cannot be safe. */
export function enableCommandCompileCache(): void {
  if (tried || process.getuid === undefined) return;
  tried = true;
  // Not ES imports of node:fs / node:module: see src/config/locate.ts.
  const fs = process.getBuiltinModule('node:fs');
  const { tmpdir } = process.getBuiltinModule('node:os');
  const { enableCompileCache } = process.getBuiltinModule('node:module');
  const uid = process.getuid();
  const dir = join(tmpdir(), `postactor-compile-cache-${uid}`);
  try {
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return;
    }
    const st = fs.lstatSync(dir);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) return;
    enableCompileCache(dir);
  } catch {
    // No cache: a slower start, nothing else.
  }
}
