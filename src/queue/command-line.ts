/**
 * Command-line plumbing shared by the queue commands (postqueue, mailq, postsuper, postcat):
 * Postfix-style getopt, usage errors and fatal errors. A file of its own, without imports, so
 * that mailq and postqueue -p start without the configuration loader and the control-socket
 * client (src/queue/admin.ts re-exports all of it).
 */

/** Exit codes (sysexits.h). */
export const EX_USAGE = 64;
export const EX_UNAVAILABLE = 69;
export const EX_TEMPFAIL = 75;

export class UsageError extends Error {}

export interface ParsedArgs {
  /** Options in the order given: [letter, value?]. */
  opts: [string, string | undefined][];
  /** --help, --json. */
  long: Set<string>;
  positionals: string[];
}

/**
 * Postfix-style getopt: `spec` lists the option letters, a letter followed by ':' takes a value
 * (attached, `-dID`, or the next argument, which may be "-"). Letters cluster (`-bhq`). Parsing
 * stops at "--" or at the first argument that is not an option. `longs` are accepted as --name.
 */
export function getopt(argv: string[], spec: string, longs: readonly string[] = ['help', 'json']): ParsedArgs {
  const takes = new Map<string, boolean>();
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i]!;
    if (c === ':') continue;
    takes.set(c, spec[i + 1] === ':');
  }
  const out: ParsedArgs = { opts: [], long: new Set(), positionals: [] };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (a.startsWith('--')) {
      const name = a.slice(2);
      if (!longs.includes(name)) throw new UsageError(`unrecognized option '${a}'`);
      out.long.add(name);
      continue;
    }
    if (!a.startsWith('-') || a === '-') break;
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      const arg = takes.get(c);
      if (arg === undefined) throw new UsageError(`invalid option -- '${c}'`);
      if (!arg) {
        out.opts.push([c, undefined]);
        continue;
      }
      let value = a.slice(j + 1);
      if (value === '') {
        if (i + 1 >= argv.length) throw new UsageError(`option requires an argument -- '${c}'`);
        value = argv[++i]!;
      }
      out.opts.push([c, value]);
      break;
    }
  }
  out.positionals.push(...argv.slice(i));
  return out;
}

/**
 * The command line of an admin command: getopt, a usage error (exit 64) for a bad one, and
 * `--help` (usage on stdout) — then null, and the command has nothing more to do.
 */
export function parseCommandLine(prog: string, usage: string, spec: string, longs?: readonly string[]): ParsedArgs | null {
  let parsed: ParsedArgs;
  try {
    parsed = getopt(process.argv.slice(2), spec, longs);
  } catch (err) {
    if (err instanceof UsageError) usageError(prog, usage, err.message);
    throw err;
  }
  if (parsed.long.has('help')) {
    // The manual page, loaded only for --help (this file stays free of imports: start-up cost).
    const { createRequire } = process.getBuiltinModule('node:module');
    const { manual } = createRequire(import.meta.url)('../cli/manual.js') as typeof import('../cli/manual.js');
    process.stdout.write(manual(prog, usage) ?? usage + '\n');
    return null;
  }
  return parsed;
}

/**
 * Closers of what must be shut before the process ends: src/queue/store.ts registers each open
 * queue store. process.exit() while lmdb-js's write worker is inside a batch (a transaction
 * whose callback has not run yet, or the worker still waiting for the batch's end after the
 * awaited commit) hangs for ever: Node joins its thread pool on exit, and that worker waits for
 * the JavaScript thread, which is exiting (lmdb-js issue #336). So an exit first closes the
 * stores (lmdb-js then commits what is pending and ends the batch), and only then exits.
 */
const closers = new Set<() => Promise<void>>();

/** Registers a closer run before the command exits; the returned function unregisters it. */
export function closeBeforeExit(close: () => Promise<void>): () => void {
  closers.add(close);
  return () => void closers.delete(close);
}

/**
 * Thrown by exitCommand to unwind its caller while the stores close: the exit is under way
 * and nothing after the call may run. It is swallowed where it surfaces (uncaught).
 */
export class CommandExit extends Error {
  override name = 'CommandExit';
}

let exiting = false;

/**
 * process.exit(code), after closing what closeBeforeExit registered. With nothing open it is
 * process.exit itself. Otherwise the code is kept, the closers run, the process exits when they
 * are done (a failed close still exits), and the caller is unwound by a CommandExit; another
 * fatal error meanwhile (a catch that reports the CommandExit) changes nothing.
 */
export function exitCommand(code: number): never {
  if (exiting) throw new CommandExit('exit under way');
  if (closers.size === 0) process.exit(code);
  exiting = true;
  process.exitCode = code;
  process.on('uncaughtException', (err) => {
    if (err instanceof CommandExit) return;
    // What Node would print, without its exit (which would hang the same way): the stores are closing.
    process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
  const pending = [...closers].map(async (close) => close());
  closers.clear();
  void Promise.allSettled(pending).then(() => process.exit());
  throw new CommandExit('exit under way');
}

/** Writes `NAME: fatal: text` (each line) on stderr and exits. */
export function fatal(prog: string, text: string, code = 1): never {
  if (exiting) throw new CommandExit('exit under way'); // the first fatal error was reported
  process.stderr.write(text.split('\n').map((l) => `${prog}: fatal: ${l}\n`).join(''));
  exitCommand(code);
}

/** Usage on stderr, exit 64. */
export function usageError(prog: string, usage: string, why?: string): never {
  if (exiting) throw new CommandExit('exit under way');
  process.stderr.write(`${why ? `${prog}: ${why}\n` : ''}${usage}\n`);
  exitCommand(EX_USAGE);
}

/**
 * Writes text on standard output with write(2) on descriptor 1, as the listing commands'
 * output: building process.stdout loads the streams (milliseconds of a short command's start).
 * What write(2) cannot take at once (a non-blocking pipe: EAGAIN) or refuses goes through
 * process.stdout, as it always did.
 */
export function writeStdout(text: string): void {
  const { writeSync } = process.getBuiltinModule('node:fs'); // not an ES import: see src/config/locate.ts
  const bytes = Buffer.from(text, 'utf8');
  let off = 0;
  try {
    while (off < bytes.length) off += writeSync(1, bytes, off, bytes.length - off);
  } catch {
    process.stdout.write(bytes.subarray(off));
  }
}
