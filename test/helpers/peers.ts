/**
 * The real peers the tests use (Debian's Postfix and its commands, Dovecot, OpenDKIM, rspamd,
 * swaks, the database servers, …), which `.ci/run` installs. On a machine without one, a test
 * that needs it is skipped, and the reason names the Debian package and the command that brings
 * it; under CI (CI=true) the test runs anyway, so a missing package fails the build instead of
 * hiding the check. `npm test` (./run.ts) says once, at the start, which peers are missing.
 */
import { existsSync } from 'node:fs';

/**
 * Where each peer is, and the Debian package that puts it there (as `.ci/run` installs them;
 * test/peers.test.ts holds the two lists together).
 */
export const PEER_PACKAGES: Readonly<Record<string, string>> = {
  '/usr/sbin/postfix': 'postfix',
  '/usr/sbin/postconf': 'postfix',
  '/usr/sbin/postmap': 'postfix',
  '/usr/sbin/postcat': 'postfix',
  '/usr/sbin/postlock': 'postfix',
  '/usr/sbin/postlog': 'postfix',
  '/usr/sbin/qshape': 'postfix',
  '/usr/sbin/qmqp-source': 'postfix',
  '/usr/sbin/smtp-source': 'postfix',
  '/usr/share/postfix/master.cf.dist': 'postfix',
  '/usr/lib/postfix/postfix-pcre.so': 'postfix-pcre',
  '/usr/sbin/dovecot': 'dovecot-core',
  '/usr/lib/dovecot/lmtp': 'dovecot-lmtpd',
  '/usr/bin/swaks': 'swaks',
  '/usr/bin/openssl': 'openssl',
  '/usr/bin/python3': 'python3',
  '/usr/bin/bsd-mailx': 'bsd-mailx',
  '/usr/lib/python3/dist-packages/Milter/__init__.py': 'python3-milter',
  '/usr/lib/python3/dist-packages/dkim/__init__.py': 'python3-dkim',
  '/usr/sbin/opendkim': 'opendkim',
  '/usr/sbin/opendkim-genkey': 'opendkim-tools',
  '/usr/bin/rspamd': 'rspamd',
  '/usr/sbin/rsyslogd': 'rsyslog',
  '/usr/sbin/pflogsumm': 'pflogsumm',
  '/usr/sbin/haproxy': 'haproxy',
  '/usr/bin/systemd-analyze': 'systemd',
  '/usr/lib/postgresql/15/bin/postgres': 'postgresql-15',
  '/usr/sbin/mariadbd': 'mariadb-server',
  '/usr/bin/memcached': 'memcached',
};

/** How to get a peer's package: the one command, or .ci/run for all of them. */
function howToGet(path: string): string {
  const pkg = PEER_PACKAGES[path];
  return pkg
    ? `Debian package ${pkg}: \`apt-get install ${pkg}\`, or run .ci/run as root, which installs every peer`
    : 'run .ci/run as root, which installs every peer';
}

/** `skip` option for a test that needs `path`: a reason outside CI when it is missing, else false. */
export function needs(path: string, what: string): string | false {
  if (existsSync(path) || process.env['CI']) return false;
  return `needs ${what}, and ${path} is not installed (${howToGet(path)})`;
}

/** The packages of the peers missing here (none under CI, where nothing is skipped). */
export function missingPeerPackages(): string[] {
  if (process.env['CI']) return [];
  return [...new Set(Object.entries(PEER_PACKAGES).filter(([path]) => !existsSync(path)).map(([, pkg]) => pkg))];
}

/** `skip` for the tests that deliver into a throwaway Dovecot over LMTP (bench/delivery/dovecot.ts). */
export const NEEDS_DOVECOT_LMTP = needs('/usr/sbin/dovecot', 'Dovecot (dovecot-core), the LMTP mail store') ||
  needs('/usr/lib/dovecot/lmtp', "Dovecot's LMTP server (dovecot-lmtpd)");
