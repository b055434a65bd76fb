/**
 * postactor — the server command, like postfix(1):
 *   postactor [-c config_dir] start-fg | start | stop | abort | reload | status | check | flush
 * SIGTERM and SIGINT stop gracefully (deliveries in flight finish), SIGQUIT aborts, SIGHUP reloads.
 * The configuration is located as Postfix's commands do (src/config/locate.ts): -c, MAIL_CONFIG,
 * POSTACTOR_CONFIG, /etc/postactor, else the embedded default. status, stop, abort and reload act
 * only on a process proven to be this queue's master (its lock and command line:
 * actors/master/lock.ts), never on whatever a pid file names.
 */
import { manual } from '../src/cli/manual.js';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, queueDirectory, type Config, type Origin } from '../src/config/index.js';
import { runningMaster } from '../actors/master/running.js';
import { MASTER_NODE_FLAGS, masterEnvironment } from '../src/runtime/heap-limits.js';
import { controlRequest, controlSocketPath } from '../src/runtime/control.js';
import { enableCommandCompileCache, flushCompileCacheSoon } from '../src/runtime/compile-cache.js';

/**
 * Master's code (and with it every module the server's main thread uses), loaded by the commands
 * that start, check or reload a configuration; stop, abort, status and flush only talk to a
 * running master and start faster without it.
 */
const masterCode = (): Promise<typeof import('../actors/master/index.js')> => {
  // Master's modules from the compile cache its threads use: its thread's start 360 → 270 ms of CPU.
  enableCommandCompileCache();
  return import('../actors/master/index.js');
};

const USAGE = 'usage: postactor [-c config_dir] [-v] start-fg | start | stop | abort | reload | status | check | flush';
const PROG = 'postactor/postactor-script';
/** sysexits EX_USAGE, as the other commands answer a bad command line. */
const EX_USAGE = 64;

function fail(text: string, code = 1): never {
  process.stderr.write(text.endsWith('\n') ? text : text + '\n');
  process.exit(code);
}

/** A warning on stderr, as every command of this file words one. */
function warn(text: string): void {
  process.stderr.write(`postactor: warning: ${text}\n`);
}

/**
 * start and reload: what stops the server from starting ends the command (file:line: …); what
 * only deserves a warning (smtpd's policy naming a table it cannot open) comes back, for the
 * caller to say once its own checks passed.
 */
async function checkedConfig(config: Config): Promise<string[]> {
  const { checkConfig } = await masterCode();
  const warnings: string[] = [];
  const problems = checkConfig(config, (w) => warnings.push(w));
  if (problems.length) fail(problems.map((l) => `postactor: fatal: ${l}`).join('\n'));
  return warnings;
}

function parse(): { dir: string | undefined; command: string } {
  let parsed;
  try {
    parsed = parseArgs({ options: { c: { type: 'string' }, v: { type: 'boolean', multiple: true }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true });
  } catch (err) {
    fail(`postactor: ${(err as Error).message}\n${USAGE}`, EX_USAGE);
  }
  if (parsed.values.help) {
    process.stdout.write(manual('postactor', USAGE) ?? USAGE + '\n');
    process.exit(0);
  }
  if (parsed.positionals.length !== 1) fail(USAGE, EX_USAGE);
  return { dir: parsed.values.c, command: parsed.positionals[0]! };
}

function load(dir: string | undefined): Config {
  try {
    return loadConfig(dir);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message.split('\n').map((l) => `postactor: fatal: ${l}`).join('\n'));
    throw err;
  }
}

/**
 * Multi-instance mode, as postfix(1): without -c or MAIL_CONFIG, a primary whose
 * multi_instance_directories is not empty hands the command to multi_instance_wrapper
 * (postmulti -p --), which runs it for every instance with MAIL_CONFIG set. start-fg is one
 * process in the foreground and always runs alone.
 */
function multiInstanceHandoff(dir: string | undefined, command: string, config: Config): void {
  if (dir || process.env['MAIL_CONFIG'] || command === 'start-fg') return;
  if (!config.get('multi_instance_directories').split(/[\s,]+/).some(Boolean)) return;
  const wrapper = config.get('multi_instance_wrapper').split(/\s+/).filter(Boolean);
  if (!wrapper.length) fail('postactor: fatal: multi-instance support is requested, but multi_instance_wrapper is empty');
  const r = spawnSync(wrapper[0]!, [...wrapper.slice(1), command], { stdio: 'inherit' });
  if (r.error) fail(`postactor: fatal: ${wrapper[0]}: ${r.error.message}`);
  process.exit(r.status ?? 1);
}

async function main(): Promise<void> {
  const { dir, command } = parse();
  const config = load(dir);
  multiInstanceHandoff(dir, command, config);
  switch (command) {
    case 'start-fg': {
      // Started by `postactor start` (below): in the background, so syslog when maillog_file is empty.
      const background = process.env['POSTACTOR_DAEMON'] === '1';
      delete process.env['POSTACTOR_DAEMON'];
      const { startMaster } = await masterCode();
      let master;
      try {
        master = await startMaster(config, { background });
      } catch (err) {
        fail((err as Error).message.split('\n').map((l) => `postactor: fatal: ${l}`).join('\n'));
      }
      flushCompileCacheSoon(); // the next start reads master's code from it (Node writes it only at exit)
      process.on('SIGTERM', () => void master.stop('15').then(() => process.exit(0)));
      process.on('SIGINT', () => void master.stop('2').then(() => process.exit(0)));
      process.on('SIGQUIT', () => void master.stop('3', false).then(() => process.exit(0)));
      process.on('SIGHUP', () => void master.reload().catch(() => undefined));
      return;
    }
    case 'start': {
      if (await runningMaster(config)) fail(`${PROG}: fatal: the Postactor mail system is already running`);
      (await checkedConfig(config)).forEach(warn);
      const logFile = config.get('maillog_file');
      const out = logFile ? openSync(logFile, 'a') : 'ignore';
      // The located directory, on the master's command line for all to see (ps, /proc/PID/cmdline).
      // The master's own heap flags first (src/runtime/heap-limits.ts: its isolate exists before any code runs).
      const args = [...MASTER_NODE_FLAGS, fileURLToPath(import.meta.url), ...(config.configDirectory ? ['-c', config.configDirectory] : []), 'start-fg'];
      const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', out, out], env: { ...masterEnvironment(), POSTACTOR_DAEMON: '1' } });
      child.unref();
      process.stderr.write(`${PROG}: starting the Postactor mail system\n`);
      const sock = controlSocketPath(queueDirectory(config));
      for (let i = 0; i < 300; i++) {
        await new Promise((r) => setTimeout(r, 100));
        try {
          await controlRequest(sock, 'status', undefined, 1000);
          return;
        } catch { /* not up yet */ }
        if (child.exitCode !== null) break;
      }
      fail(`${PROG}: fatal: the Postactor mail system did not start${logFile ? ` (see ${logFile})` : ''}`);
    }
    // falls through (fail exits)
    case 'stop': {
      const pid = await runningMaster(config);
      if (!pid) fail(`${PROG}: fatal: the Postactor mail system is not running`);
      process.stderr.write(`${PROG}: stopping the Postactor mail system\n`);
      process.kill(pid, 'SIGTERM');
      // Stopped when no process holds the queue's lock any more (a pid may be reused meanwhile).
      for (let i = 0; i < 300; i++) {
        await new Promise((r) => setTimeout(r, 100));
        if ((await runningMaster(config)) !== pid) return;
      }
      fail(`${PROG}: fatal: the Postactor mail system did not stop`);
    }
    // falls through (fail exits)
    case 'abort': {
      const pid = await runningMaster(config);
      if (!pid) fail(`${PROG}: fatal: the Postactor mail system is not running`);
      process.stderr.write(`${PROG}: aborting the Postactor mail system\n`);
      process.kill(pid, 'SIGQUIT');
      return;
    }
    case 'reload': {
      const warnings = await checkedConfig(load(dir));
      if (!(await runningMaster(config))) fail(`${PROG}: fatal: the Postactor mail system is not running`);
      warnings.forEach(warn);
      try {
        await controlRequest(controlSocketPath(queueDirectory(config)), 'reload', undefined, 60_000);
      } catch (err) {
        fail(`${PROG}: fatal: reload: ${(err as Error).message}`);
      }
      process.stderr.write(`${PROG}: refreshing the Postactor mail system\n`);
      return;
    }
    case 'status': {
      const pid = await runningMaster(config);
      if (!pid) fail(`${PROG}: the Postactor mail system is not running`);
      process.stderr.write(`${PROG}: the Postactor mail system is running: PID: ${pid}\n`);
      return;
    }
    case 'check': {
      const [{ checkConfig, resolveListenAddresses }, { planServices }, { checkTables }, { QueueStore }] = await Promise.all([
        masterCode(), import('../actors/master/services.js'), import('../actors/master/tables.js'), import('../src/queue/store.js'),
      ]);
      // What smtpd's policy says of a table that cannot be opened, checkTables below says too,
      // with the line of the setting: said once, there.
      const policyWarnings: string[] = [];
      const problems = checkConfig(config, (w) => policyWarnings.push(w));
      // Where inet services would listen (inet_interfaces, inet_protocols, host names).
      if (!problems.length) {
        await resolveListenAddresses(config, planServices(config), warn)
          .catch((err: Error) => problems.push(err.message));
      }
      config.warnings.forEach(warn);
      if (problems.length) fail(problems.map((l) => `postactor: fatal: ${l}`).join('\n'));
      // The lookup tables main.cf names: missing or broken ones are reported now, not at the first mail.
      const j = config.toJSON();
      const settings = Object.keys(j.params).map((n): [string, Origin] => [n, j.origins?.[n] ?? { file: 'main.cf', line: null }]);
      const tableWarnings = await checkTables(config, settings);
      tableWarnings.forEach(warn);
      for (const w of policyWarnings) {
        // "type:name: …" (proxy:type:name too): the same file named in checkTables' lines.
        const table = /^[a-z0-9]+:\S+?: /.exec(w)?.[0].slice(0, -2);
        const file = table?.slice(table.lastIndexOf(':') + 1);
        if (file === undefined || !tableWarnings.some((t) => t.includes(file))) warn(w);
      }
      // Queue sanity, as postfix check looks at the queue: report, never repair (postsuper -s does).
      const queueDir = queueDirectory(config);
      if (existsSync(join(queueDir, 'queue.lmdb'))) {
        const store = QueueStore.open(queueDir, { readOnly: true });
        try {
          const r = await store.checkStructure(false);
          if (r.danglingIndex) process.stderr.write(`postactor: warning: ${queueDir}: ${r.danglingIndex} queue index entr${r.danglingIndex === 1 ? 'y' : 'ies'} without a message (repair: postsuper -s)\n`);
          if (r.danglingDue) process.stderr.write(`postactor: warning: ${queueDir}: ${r.danglingDue} deferred-index entr${r.danglingDue === 1 ? 'y' : 'ies'} without a message (repair: postsuper -s)\n`);
          if (r.reindexed) process.stderr.write(`postactor: warning: ${queueDir}: ${r.reindexed} message(s) missing from their queue's index (repair: postsuper -s)\n`);
          for (const id of r.corrupt) process.stderr.write(`postactor: warning: ${queueDir}: ${id}: message without content (repair: postsuper -s)\n`);
          for (const id of r.damaged) process.stderr.write(`postactor: warning: ${queueDir}: ${id}: envelope does not decode (repair: postsuper -s)\n`);
        } finally {
          await store.close();
        }
      }
      return;
    }
    case 'flush': {
      try {
        await controlRequest(controlSocketPath(queueDirectory(config)), 'flush');
      } catch (err) {
        fail(`postactor: fatal: flush: ${(err as Error).message} (is the mail system running?)`);
      }
      return;
    }
    default:
      fail(`postactor: unknown command: '${command}'\n${USAGE}`, EX_USAGE);
  }
}

main().catch((err: Error) => fail(`postactor: fatal: ${err.message}`));
