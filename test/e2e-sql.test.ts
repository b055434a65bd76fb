/**
 * End to end with database tables: real servers (a Postactor child) whose
 * virtual_mailbox_domains, virtual_mailbox_maps and relay_domains live in a real PostgreSQL 15
 * or MariaDB started by the test. Mail for a mailbox in the database is delivered by
 * virtual(8), an unknown one refused at RCPT; the database going down gives 451 4.3.0 (never
 * acceptance, never 550); proxy: keeps the number of database connections independent of
 * the number of threads (counted on the server, pg_stat_activity); and two Postactor nodes
 * sharing one database both see a change in it at once, without a reload.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { needsServer, PG_BIN, startMariadb, startPostgres, type DbServer } from './helpers/db-servers.js';
import { reachableDir } from './helpers/reachable.js';
import { BACKEND_SERVICES, freePort, queuedId, rfc822, sendRaw, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const ROOT = process.getuid!() === 0;
const UID = ROOT ? 65534 : process.getuid!();
const GID = ROOT ? 65534 : process.getgid!();
const tempDir = tempDirs('e2e-sql-');

const SCHEMA = [
  'CREATE TABLE domains (domain VARCHAR(200) NOT NULL)',
  'CREATE TABLE mailbox (address VARCHAR(200) NOT NULL, maildir VARCHAR(200) NOT NULL)',
  'CREATE TABLE relay (domain VARCHAR(200) NOT NULL)',
  "INSERT INTO domains VALUES ('virt.test')",
  "INSERT INTO mailbox VALUES ('alice@virt.test', 'virt.test/alice/')",
];

/** The three table files for a database reachable with `head` (hosts, user, dbname lines). */
function tableFiles(dir: string, type: string, head: string): Record<string, string> {
  const files: Record<string, string> = {
    domains: "query = SELECT domain FROM domains WHERE domain = '%s'",
    mailboxes: "query = SELECT maildir FROM mailbox WHERE address = '%s'",
    relay: "query = SELECT domain FROM relay WHERE domain = '%s'",
  };
  const out: Record<string, string> = {};
  for (const [name, query] of Object.entries(files)) {
    writeFileSync(join(dir, `${name}.cf`), `# ${type} table\n${head}\n${query}\n`);
    out[name] = `${type}:${join(dir, `${name}.cf`)}`;
  }
  return out;
}

/** A server delivering virt.test with virtual(8); `smtpdThreads` smtpd threads; tables maybe behind proxy:. */
async function mailServer(base: string, t: Record<string, string>, opts: { proxy?: boolean; smtpdThreads?: number; extraPorts?: number[]; extra?: Record<string, string> } = {}): Promise<TestServer> {
  const p = opts.proxy ? 'proxy:' : '';
  const more = (opts.extraPorts ?? []).map((port) => `127.0.0.1:${port} inet n - n - 1 smtpd`);
  return startServer({
    masterCf: [`127.0.0.1:{{PORT}} inet n - n - ${opts.smtpdThreads ?? 1} smtpd`, ...more, ...BACKEND_SERVICES, 'virtual unix - n n - 1 virtual', ''].join('\n'),
    mainCf: {
      virtual_mailbox_domains: `${p}${t['domains']}`,
      virtual_mailbox_maps: `${p}${t['mailboxes']}`,
      relay_domains: `${p}${t['relay']}`,
      // The test's client (127.0.0.1) is not a trusted network: relaying depends on relay_domains.
      mynetworks: '192.0.2.0/24',
      virtual_mailbox_base: base,
      virtual_uid_maps: `static:${UID}`,
      virtual_gid_maps: `static:${GID}`,
      ...opts.extra,
    },
  });
}

const bases: string[] = [];
after(() => {
  for (const d of bases) rmSync(d, { recursive: true, force: true });
});

function mailBase(): string {
  const dir = reachableDir('e2e-sql-base-');
  bases.push(dir);
  const base = join(dir, 'base');
  mkdirSync(join(base, 'virt.test'), { recursive: true });
  chmodSync(base, 0o777);
  chmodSync(join(base, 'virt.test'), 0o777);
  return base;
}

/** The RCPT reply for `to` in a fresh session (MAIL FROM first). */
async function rcpt(server: { port: number }, to: string): Promise<string> {
  const { smtp } = await SmtpDialogue.connect(server.port, { timeoutMs: 20_000 });
  try {
    await smtp.cmd('EHLO client.test');
    await smtp.cmd('MAIL FROM:<sender@example.org>');
    return (await smtp.cmd(`RCPT TO:<${to}>`)).line;
  } finally {
    await smtp.cmd('QUIT').catch(() => undefined);
    smtp.socket.destroy();
  }
}

async function deliverAndCheck(server: TestServer, base: string, to: string, subject: string): Promise<void> {
  const id = queuedId(await sendRaw(server.port, 'sender@example.org', [to], rfc822({ From: '<sender@example.org>', Subject: subject }, 'hello\n')));
  const line = await server.waitForLog(new RegExp(`${id}: to=<${to.replace(/[.+]/g, '\\$&')}>, .*status=`), 30_000);
  assert.match(line, /relay=virtual, .*dsn=2\.0\.0, status=sent \(delivered to maildir\)$/);
  const user = to.split('@')[0]!;
  const dir = join(base, 'virt.test', user, 'new');
  assert.ok(existsSync(dir) && readdirSync(dir).length >= 1, `a message in ${dir}`);
}

describe('e2e pgsql: tables (PostgreSQL 15)', { skip: needsServer(join(PG_BIN, 'postgres'), 'postgresql-15') }, () => {
  let db: DbServer;
  const servers: TestServer[] = [];
  const dir = tempDir();
  let t: Record<string, string>;
  let base: string;

  before(async () => {
    db = await startPostgres();
    await db.sql('CREATE DATABASE mail');
    const pg = (await import('pg')).default;
    const c = new pg.Client({ host: '127.0.0.1', port: db.port, user: 'postgres', database: 'mail' });
    await c.connect();
    for (const s of SCHEMA) await c.query(s);
    await c.end();
    // Copies for the connection-count tests, so that each counts only its own server's connections.
    await db.sql('CREATE DATABASE mailproxy TEMPLATE mail');
    await db.sql('CREATE DATABASE mailthreads TEMPLATE mail');
    t = tableFiles(dir, 'pgsql', `hosts = inet:127.0.0.1:${db.port}\nuser = postgres\npassword = x\ndbname = mail`);
    base = mailBase();
  });
  after(async () => {
    await Promise.allSettled(servers.map((s) => s.stop()));
    await db?.stop();
  });

  const inMail = async (sql: string) => {
    const pg = (await import('pg')).default;
    const c = new pg.Client({ host: '127.0.0.1', port: db.port, user: 'postgres', database: 'mail' });
    await c.connect();
    try { await c.query(sql); } finally { await c.end(); }
  };

  test('virtual_mailbox_maps = pgsql: delivers mail for a mailbox in the database with virtual(8); an unknown one is refused at RCPT', async () => {
    const a = await mailServer(base, t);
    servers.push(a);
    await deliverAndCheck(a, base, 'alice@virt.test', 'pgsql delivery');
    assert.equal(await rcpt(a, 'nobody@virt.test'), '550 5.1.1 <nobody@virt.test>: Recipient address rejected: User unknown in virtual mailbox table');
    assert.equal(await rcpt(a, 'x@unknown.test'), '454 4.7.1 <x@unknown.test>: Relay access denied');
  });

  test('two nodes, one database: a mailbox and a relay domain added to PostgreSQL take effect on both servers without a reload', async () => {
    const a = servers[0] ?? await mailServer(base, t);
    const b = await mailServer(base, t);
    servers.push(b);
    for (const s of [a, b]) {
      assert.match(await rcpt(s, 'newbie@virt.test'), /^550 5\.1\.1 /);
      assert.match(await rcpt(s, 'x@relayed.test'), /^454 4\.7\.1 .*Relay access denied/);
    }
    await inMail("INSERT INTO mailbox VALUES ('newbie@virt.test', 'virt.test/newbie/')");
    await inMail("INSERT INTO relay VALUES ('relayed.test')");
    for (const s of [a, b]) {
      assert.match(await rcpt(s, 'newbie@virt.test'), /^250 /);
      assert.match(await rcpt(s, 'x@relayed.test'), /^250 /);
    }
    await deliverAndCheck(b, base, 'newbie@virt.test', 'second node');
    await inMail("DELETE FROM mailbox WHERE address = 'newbie@virt.test'");
    for (const s of [a, b]) assert.match(await rcpt(s, 'newbie@virt.test'), /^550 5\.1\.1 /);
  });

  test('proxy: one set of connections in the master however many smtpd threads; without proxy: one per thread', async () => {
    const count = async (datname: string) => Number(((await db.sql('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1', [datname])) as { n: string }[])[0]!.n);
    // smtpd threads beyond a service's first start only under load, so the threads here are those
    // of three smtpd services (three listeners), each asked in turn.
    const traffic = async (s: TestServer, ports: number[]) => {
      for (const port of [s.port, ...ports]) {
        for (let round = 0; round < 2; round++) {
          await Promise.all(Array.from({ length: 4 }, (_, i) => rcpt({ port }, i % 2 ? 'alice@virt.test' : 'nobody@virt.test')));
        }
      }
    };
    const proxyPorts = [await freePort(), await freePort()];
    const proxied = await mailServer(base, tableFiles(tempDir(), 'pgsql', `hosts = inet:127.0.0.1:${db.port}\nuser = postgres\ndbname = mailproxy`), { proxy: true, extraPorts: proxyPorts });
    servers.push(proxied);
    await traffic(proxied, proxyPorts);
    const viaProxy = await count('mailproxy');
    // Two tables were used (virtual_mailbox_domains, virtual_mailbox_maps): one connection each, in the master.
    assert.ok(viaProxy >= 1 && viaProxy <= 2, `proxy: ${viaProxy} connections for 3 smtpd threads`);
    assert.ok(proxied.logLines().every((l) => !/unapproved table/.test(l)), 'the default proxy_read_maps approves these tables');

    const directPorts = [await freePort(), await freePort()];
    const direct = await mailServer(base, tableFiles(tempDir(), 'pgsql', `hosts = inet:127.0.0.1:${db.port}\nuser = postgres\ndbname = mailthreads`), { extraPorts: directPorts });
    servers.push(direct);
    await traffic(direct, directPorts);
    const perThread = await count('mailthreads');
    assert.ok(perThread > viaProxy, `without proxy: ${perThread} connections (one per table per thread), with: ${viaProxy}`);
  });

  test('proxy: a table not in proxy_read_maps is refused (proxymap\'s warnings), and the recipient deferred, not accepted or rejected', async () => {
    const s = await mailServer(base, t, { proxy: true, extra: { proxy_read_maps: '$virtual_mailbox_domains' } });
    servers.push(s);
    assert.equal(await rcpt(s, 'alice@virt.test'), '451 4.3.0 <alice@virt.test>: Temporary lookup failure');
    await s.waitForLog(/proxymap\[\d+\]: warning: request for unapproved table: "pgsql:.*mailboxes\.cf"/, 5000);
    await s.waitForLog(/proxymap\[\d+\]: warning: to approve this table for read-only access, list proxy:pgsql:.*mailboxes\.cf in main\.cf:proxy_read_maps/, 5000);
  });

  test('the database going down: RCPT gets 451 4.3.0 Temporary lookup failure, never acceptance or 550; in delivery, a deferral', async () => {
    const a = servers[0]!;
    // A server whose smtpd does not look the mailbox up (static domain list, no unlisted check): virtual(8) meets the failure.
    const lenient = await mailServer(base, { ...t, domains: 'static:virt.test' }, { extra: { smtpd_reject_unlisted_recipient: 'no' } });
    servers.push(lenient);
    await db.down();
    try {
      assert.equal(await rcpt(a, 'alice@virt.test'), '451 4.3.0 <alice@virt.test>: Temporary lookup failure');
      assert.equal(await rcpt(a, 'nobody@virt.test'), '451 4.3.0 <nobody@virt.test>: Temporary lookup failure');
      assert.ok(a.logLines().some((l) => /warning: connect to pgsql server inet:127\.0\.0\.1:\d+: /.test(l)), 'the failed connection is logged');
      const id = queuedId(await sendRaw(lenient.port, 'sender@example.org', ['alice@virt.test'], rfc822({ From: '<sender@example.org>', Subject: 'db down' }, 'hello\n')));
      assert.match(await lenient.waitForLog(new RegExp(`${id}: to=<alice@virt\\.test>, .*status=`), 30_000), /relay=virtual, .*dsn=4\.3\.5, status=deferred \(mail system configuration error\)$/);
      await lenient.waitForLog(/warning: table virtual_mailbox_maps: lookup alice@virt\.test: pgsql:.*no pgsql server available/, 5000);
    } finally {
      await db.up();
    }
  });
});

describe('e2e mysql: tables (MariaDB)', { skip: needsServer('/usr/sbin/mariadbd', 'mariadb-server') }, () => {
  let db: DbServer;
  let server: TestServer;
  let base: string;

  before(async () => {
    db = await startMariadb();
    await db.sql(`CREATE DATABASE mail; USE mail; ${SCHEMA.join('; ')};`);
    base = mailBase();
    server = await mailServer(base, tableFiles(tempDir(), 'mysql', `hosts = 127.0.0.1:${db.port}\nuser = root\ndbname = mail`));
  });
  after(async () => {
    await server?.stop();
    await db?.stop();
  });

  test('virtual_mailbox_maps = mysql: delivers mail for a mailbox in the database; an unknown one is refused at RCPT; a change is seen at once', async () => {
    await deliverAndCheck(server, base, 'alice@virt.test', 'mysql delivery');
    assert.equal(await rcpt(server, 'nobody@virt.test'), '550 5.1.1 <nobody@virt.test>: Recipient address rejected: User unknown in virtual mailbox table');
    await db.sql("INSERT INTO mail.mailbox VALUES ('bob@virt.test', 'virt.test/bob/')");
    assert.match(await rcpt(server, 'bob@virt.test'), /^250 /);
  });

  test('MariaDB going down: 451 4.3.0 at RCPT', async () => {
    await db.down();
    assert.equal(await rcpt(server, 'alice@virt.test'), '451 4.3.0 <alice@virt.test>: Temporary lookup failure');
  });
});
