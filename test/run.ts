/**
 * `npm test`: every dist/test/**\/*.test.js, three files at a time, longest first.
 *
 * Three: the files spend much of their time waiting (for a server to start, a delivery, a
 * timeout they test), so two at a time left this two-core machine's CPU a quarter idle (926 s of
 * CPU in a 640 s run); three ran the suite in 533 s instead of 640. Longest first: `node --test`
 * with a glob runs the files in alphabetical order, and a long file that starts last runs alone at
 * the end (in a 606 s run the slots ended 32 s apart). Starting the longest files first
 * (LONGEST, measured with a reporter that sums each file's top-level durations) leaves the short
 * ones to fill the end. A file missing from LONGEST runs after them, in alphabetical order; one
 * named there that no longer exists is skipped. Arguments, when given, are the files to run
 * instead (as `node --test FILE…` would).
 */
import { readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { missingPeerPackages } from './helpers/peers.js';

const HERE = dirname(fileURLToPath(import.meta.url));

/** Test files over 14 s in a suite run at two files at a time (2026-12-04), longest first. */
const LONGEST = [
  'queue-admin', 'e2e-reload-sessions', 'e2e-local', 'e2e-headers-postfix', 'e2e-smtpd-sessions',
  'e2e-crash', 'service-skeleton', 'e2e-smtp-sasl', 'smtpd-demand', 'e2e-smtp-checks',
  'postcat-queue-file', 'e2e-sql', 'runtime', 'postconf', 'e2e-qmgr-feedback', 'e2e-smtpd-fuzz',
  'e2e-smtpd-ccert', 'e2e-smtpd-limits', 'postmulti', 'e2e-milter-rspamd', 'e2e-defer',
  'e2e-verify', 'e2e-postscreen', 'writer-lock', 'agents',
];

/** Every *.test.js below dir (its subdirectories too), as absolute paths. */
function testFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.test.js')).map((f) => join(dir, f));
}

function ordered(files: string[]): string[] {
  const rank = (f: string) => {
    const i = LONGEST.indexOf(relative(HERE, f).replace(/\.test\.js$/, ''));
    return i < 0 ? LONGEST.length : i;
  };
  return [...files].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

const files = process.argv.length > 2 ? process.argv.slice(2) : ordered(testFiles(HERE));
// Outside CI a test whose peer is missing is skipped (./helpers/peers.ts): say so once, up front.
const missing = missingPeerPackages();
if (missing.length > 0) {
  process.stderr.write(`npm test: the tests that need these Debian packages are skipped, each saying why: ${missing.join(' ')}.\n` +
    `Install them (apt-get install ${missing.join(' ')}), or run .ci/run as root: it installs every peer, then runs npm test.\n`);
}
const stream = run({ files, concurrency: 3, timeout: 180_000 });
stream.on('test:fail', () => { process.exitCode = 1; });
stream.compose(spec).pipe(process.stdout);
