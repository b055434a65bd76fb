// Where a command finds its configuration directory, in Postfix's order:
//
//   1. -c DIR (sendmail: -C DIR or -C DIR/main.cf)
//   2. MAIL_CONFIG, Postfix's own variable (cron and PHP call /usr/sbin/sendmail with it)
//   3. POSTACTOR_CONFIG, Postactor's older name for the same thing
//   4. the system default directory /etc/postactor, when it holds a main.cf
//   5. else null: the embedded default (src/config/embedded.ts), state under the project
//
// An empty value counts as unset. Postfix has no step 3 and stops at 4 (DEF_CONFIG_DIR, which
// must exist); step 5 keeps a fresh checkout usable without any file outside it.
//
// Postfix's safety rule for a non-default directory (mail_conf.c): when the program runs with
// set-uid or set-gid privileges (postdrop, postqueue), a directory named by -c or MAIL_CONFIG
// must be listed in the default main.cf's alternate_config_directories or
// multi_instance_directories, so that a caller cannot feed a privileged program a
// configuration of their own. Postactor's commands carry no privileges (no set-gid helper:
// sendmail writes the maildrop with the caller's own permissions), so the rule applies only if
// a command is ever run set-id; it is mirrored for that case.

import path from 'node:path';
import { configError } from './errors.js';

// Not `import … from 'node:fs'`: an ES module import of node:fs builds its namespace, which loads
// fs/promises and the streams (some 30 internal modules, milliseconds at every start of sendmail
// and mailq, which import this file). getBuiltinModule returns the already loaded module.
const fs = process.getBuiltinModule('node:fs');

/** Postactor's default configuration directory (Postfix: /etc/postfix); config_directory's default. */
export const SYSTEM_CONFIG_DIRECTORY = '/etc/postactor';

export type ConfigSource = '-c' | 'MAIL_CONFIG' | 'POSTACTOR_CONFIG' | 'system' | 'embedded';

export interface LocatedConfig {
  /** The directory, as given (not resolved); null for the embedded default. */
  dir: string | null;
  /** Which step found it. */
  source: ConfigSource;
}

export interface LocateOptions {
  env?: NodeJS.ProcessEnv;
  /** The system default directory (tests point it elsewhere). */
  systemDir?: string;
  /** Whether this process runs set-uid/set-gid (Postfix's unsafe()). */
  privileged?: boolean;
}

/** Postfix's unsafe(): real and effective ids differ. */
function setIdProcess(): boolean {
  return process.getuid !== undefined && (process.getuid() !== process.geteuid!() || process.getgid!() !== process.getegid!());
}

/**
 * Postfix's mail_conf_checkdir(): a non-default directory must be named in the default
 * main.cf by alternate_config_directories or multi_instance_directories.
 */
function checkAuthorized(dir: string, systemDir: string): void {
  const mainCf = path.join(systemDir, 'main.cf');
  let text: string;
  try {
    text = fs.readFileSync(mainCf, 'utf8');
  } catch (err) {
    throw configError(mainCf, null, `open file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  for (const line of text.split('\n')) {
    const m = /^(alternate_config_directories|multi_instance_directories)\s*=(.*)$/.exec(line);
    if (m && m[2]!.split(/[\s,]+/).includes(dir)) return;
  }
  throw configError(dir, null, `unauthorized configuration directory name: specify "alternate_config_directories = ${dir}" or "multi_instance_directories = ${dir}" in ${mainCf}`);
}

/** The configuration directory for a command given -c dir (or nothing). */
export function locateConfigDirectory(dir?: string | null, opts: LocateOptions = {}): LocatedConfig {
  const env = opts.env ?? process.env;
  const systemDir = opts.systemDir ?? SYSTEM_CONFIG_DIRECTORY;
  let found: LocatedConfig;
  if (dir) found = { dir, source: '-c' };
  else if (env['MAIL_CONFIG']) found = { dir: env['MAIL_CONFIG'], source: 'MAIL_CONFIG' };
  else if (env['POSTACTOR_CONFIG']) found = { dir: env['POSTACTOR_CONFIG'], source: 'POSTACTOR_CONFIG' };
  else if (fs.existsSync(path.join(systemDir, 'main.cf'))) return { dir: systemDir, source: 'system' };
  else return { dir: null, source: 'embedded' };
  if ((opts.privileged ?? setIdProcess()) && path.resolve(found.dir!) !== path.resolve(systemDir)) checkAuthorized(found.dir!, systemDir);
  return found;
}
