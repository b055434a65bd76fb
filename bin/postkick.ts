/**
 * postkick — Postfix's postkick(1): send a request to a running service.
 *
 *   postkick [-c config_dir] [-v] class service request
 *
 * Postfix writes the request to the FIFO or socket queue_directory/class/service; Postactor's
 * services are threads, so the request goes to the master's control socket, which hands it to
 * the master.cf service of that name in that class (actors/master/kick.ts):
 *
 *   postkick public pickup W     pickup scans the maildrop now
 *   postkick public qmgr I       qmgr scans the incoming queue (D: deferred mail that is due,
 *                                A: all deferred mail, F: forget dead destinations, W: wake up)
 *
 * Exit 0 once the service has the request; 1 with Postfix's warning when the mail system is down
 * or no such service runs; usage and 64 on misuse.
 */
import { controlRequest } from '../src/runtime/control.js';
import { commandConfig, fatal, masterSocket, parseCommandLine, usageError } from '../src/queue/admin.js';

const PROG = 'postkick';
const USAGE = 'usage: postkick [-c config_dir] [-v] class service request';

async function main(): Promise<void> {
  const parsed = parseCommandLine(PROG, USAGE, 'c:v');
  if (!parsed) return;
  let dir: string | undefined;
  for (const [c, v] of parsed.opts) if (c === 'c') dir = v;
  if (parsed.positionals.length !== 3) usageError(PROG, USAGE);
  const [cls, service, request] = parsed.positionals as [string, string, string];
  const config = commandConfig(PROG, dir);
  try {
    await controlRequest(masterSocket(config), 'kick', { class: cls, service, request });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || /timeout|^not found/.test(e.message)) {
      process.stderr.write(`${PROG}: warning: Cannot contact class ${cls} service ${service} - perhaps the mail system is down\n`);
      process.exit(1);
    }
    fatal(PROG, e.message);
  }
}

void main();
