/**
 * The database and server lookup tables against real servers started by the test: pgsql:
 * (PostgreSQL 15) and mysql: (MariaDB) with Postfix's table-file syntax, sqlite: (node:sqlite),
 * memcache: (memcached), socketmap: and tcp: (small servers written here), and proxy:'s
 * proxy_read_maps check. Every failure is a TableError (a temporary failure), never a miss;
 * postmap -q answers from every type.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { DatabaseSync } from 'node:sqlite';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { closeSharedTables, lookupAddress, mainProxymap, openTable, TableError } from '../src/maps/index.js';
import { postmapRun } from '../src/maps/cli.js';
import { buildConfig } from '../src/config/load.js';
import { openTables, resolveAddress, resolveSettings } from '../src/rewrite/resolve.js';
import { needsServer, PG_BIN, startMariadb, startMemcached, startPostgres, type DbServer } from './helpers/db-servers.js';
import { NODE, REPO_ROOT } from './helpers/server.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('sqltables-');

async function postmap(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await postmapRun(args, { stdout: (s) => { out += s; }, stderr: (s) => { err += s; }, readStdin: () => '' });
  return { code, out, err };
}

const value = async (spec: string, key: string) => {
  const r = await openTable(spec).lookup(key);
  return r.found ? r.value : null;
};

const ROWS = [
  ['alice@example.com', 'example.com/alice/', 'a1'],
  ['bob@example.com', 'example.com/bob/', 'b1'],
  ['bob@example.com', 'example.com/bob2/', 'b2'],
  ['o\'neil@example.com', 'example.com/oneil/', 'o1'],
  ['carol@sub.example.org', 'example.org/carol/', 'c1'],
];

/** The cases every SQL table type answers the same way (files written by `cf`). */
function sqlCases(kind: 'pgsql' | 'mysql' | 'sqlite', cf: (name: string, body: string) => string) {
  test(`${kind}: query with %s; key folded; several rows joined by commas; quoting; a miss is not found`, async () => {
    const spec = `${kind}:${cf('plain.cf', "query = SELECT maildir FROM mailbox WHERE address = '%s' ORDER BY maildir")}`;
    assert.equal(await value(spec, 'Alice@Example.COM'), 'example.com/alice/');
    assert.equal(await value(spec, 'bob@example.com'), 'example.com/bob/,example.com/bob2/');
    assert.equal(await value(spec, "o'neil@example.com"), 'example.com/oneil/');
    assert.equal(await value(spec, "x' OR '1'='1"), null, 'a quote in the key stays in the string');
    assert.equal(await value(spec, 'nobody@example.com'), null);
    assert.equal(openTable(spec).kind, 'fixed', '%s only: a fixed-key table');
  });

  test(`${kind}: %u %d %1 %2 query templates; such a table is a pattern table; keys that cannot fill it are not looked up`, async () => {
    const spec = `${kind}:${cf('parts.cf', "query = SELECT tag FROM mailbox WHERE address = '%u@%2.%1' AND address LIKE '%%@%d'")}`;
    assert.equal(await value(spec, 'alice@example.com'), 'a1');
    assert.equal(await value(spec, 'example.com'), null, 'no domain for %d');
    assert.equal(await value(spec, '@example.com'), null, 'empty local part for %u');
    assert.equal(openTable(spec).kind, 'pattern');
    const r = await lookupAddress(openTable(spec), 'alice@example.com');
    assert.equal(r.found && r.value, 'a1');
  });

  test(`${kind}: result_format with %s %u %d %S %D; expansion_limit exceeded is a TableError`, async () => {
    const spec = `${kind}:${cf('fmt.cf', "query = SELECT maildir FROM mailbox WHERE address = '%s' ORDER BY maildir\nresult_format = /base/%s for %U at %D")}`;
    assert.equal(await value(spec, 'alice@example.com'), '/base/example.com/alice/ for alice at example.com');
    const limited = `${kind}:${cf('limit.cf', "query = SELECT maildir FROM mailbox WHERE address = '%s'\nexpansion_limit = 1")}`;
    assert.equal(await value(limited, 'alice@example.com'), 'example.com/alice/');
    await assert.rejects(async () => openTable(limited).lookup('bob@example.com'), (e: Error) => e instanceof TableError && /Expansion limit exceeded for key: 'bob@example.com'/.test(e.message));
    const dom = `${kind}:${cf('dom.cf', "query = SELECT address FROM mailbox WHERE address = '%s'\nresult_format = %d")}`;
    assert.equal(await value(dom, 'alice@example.com'), 'example.com');
  });

  test(`${kind}: domain = restricts lookups to user@domain keys of those domains`, async () => {
    const spec = `${kind}:${cf('domain.cf', "domain = example.com, other.test\nquery = SELECT tag FROM mailbox WHERE address = '%s' OR address = 'alice@example.com'")}`;
    assert.equal(await value(spec, 'alice@example.com'), 'a1');
    assert.equal(await value(spec, 'carol@sub.example.org'), null, 'domain not listed');
    assert.equal(await value(spec, 'example.com'), null, 'a bare domain is not looked up');
    assert.equal(await value(spec, '@example.com'), null, 'nor @domain');
  });

  test(`${kind}: a bad query is a TableError, not a miss; legacy parameters and a missing query are refused`, async () => {
    const spec = `${kind}:${cf('bad.cf', "query = SELECT nosuchcolumn FROM mailbox WHERE address = '%s'")}`;
    await assert.rejects(async () => openTable(spec).lookup('alice@example.com'), TableError);
    assert.throws(() => openTable(`${kind}:${cf('legacy.cf', 'table = mailbox\nselect_field = maildir\nwhere_field = address')}`), /legacy parameter not supported/);
    assert.throws(() => openTable(`${kind}:${cf('noquery.cf', '# nothing\n')}`), /missing "query" parameter/);
    assert.throws(() => openTable(`${kind}:${cf('badtpl.cf', "query = SELECT 1 WHERE x = '%x'")}`), /invalid query template/);
  });

  test(`${kind}: postmap -q answers from the table`, async () => {
    const file = cf('postmap.cf', "query = SELECT maildir FROM mailbox WHERE address = '%s'");
    assert.deepEqual(await postmap(['-q', 'alice@example.com', `${kind}:${file}`]), { code: 0, out: 'example.com/alice/\n', err: '' });
    assert.equal((await postmap(['-q', 'nobody@example.com', `${kind}:${file}`])).code, 1);
  });
}

const CREATE = 'CREATE TABLE mailbox (address VARCHAR(200) NOT NULL, maildir VARCHAR(200), tag VARCHAR(20))';

describe('pgsql: tables (PostgreSQL 15)', { skip: needsServer(join(PG_BIN, 'postgres'), 'postgresql-15') }, () => {
  let db: DbServer;
  const dir = tempDir();
  const cf = (name: string, body: string) => {
    writeFileSync(join(dir, name), `hosts = inet:127.0.0.1:${db.port}\nuser = postgres\npassword = unused\ndbname = mail\n${body}\n`);
    return join(dir, name);
  };
  before(async () => {
    db = await startPostgres();
    await db.sql('CREATE DATABASE mail');
    const pg = (await import('pg')).default;
    const c = new pg.Client({ host: '127.0.0.1', port: db.port, user: 'postgres', database: 'mail' });
    await c.connect();
    await c.query(CREATE);
    for (const r of ROWS) await c.query('INSERT INTO mailbox VALUES ($1, $2, $3)', r);
    await c.end();
  });
  after(async () => {
    closeSharedTables();
    await db?.stop();
  });
  sqlCases('pgsql', cf);

  test('pgsql: hosts tried in turn: a dead host first is skipped; all hosts down is a TableError naming them', async () => {
    const file = join(dir, 'hosts.cf');
    writeFileSync(file, `hosts = inet:127.0.0.1:1 127.0.0.1:${db.port}\nuser = postgres\ndbname = mail\nquery = SELECT tag FROM mailbox WHERE address = '%s'\n`);
    assert.equal(await value(`pgsql:${file}`, 'alice@example.com'), 'a1');
    // A postgresql:// URI, over TCP and over the server's UNIX-domain socket.
    writeFileSync(join(dir, 'uri.cf'), `hosts = postgresql://postgres@127.0.0.1:${db.port}/mail\ndbname = ignored\nquery = SELECT tag FROM mailbox WHERE address = '%s'\n`);
    assert.equal(await value(`pgsql:${join(dir, 'uri.cf')}`, 'bob@example.com'), 'b1,b2');
    writeFileSync(join(dir, 'unix.cf'), `hosts = postgresql://postgres@/mail?host=${db.socketDir}&port=${db.port}\ndbname = mail\nquery = SELECT tag FROM mailbox WHERE address = '%s'\n`);
    assert.equal(await value(`pgsql:${join(dir, 'unix.cf')}`, 'alice@example.com'), 'a1');
    const dead = join(dir, 'dead.cf');
    writeFileSync(dead, `hosts = inet:127.0.0.1:1\nuser = postgres\ndbname = mail\nquery = SELECT tag FROM mailbox WHERE address = '%s'\n`);
    await assert.rejects(async () => openTable(`pgsql:${dead}`).lookup('alice@example.com'), /no pgsql server available \(inet:127\.0\.0\.1:1\)/);
    const r = await postmap(['-q', 'alice@example.com', `pgsql:${dead}`]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^postmap: fatal: query error: pgsql:.*no pgsql server available/);
  });

  test('pgsql: bin/postmap -q (a separate process) answers and exits', () => {
    const file = cf('bin.cf', "query = SELECT maildir FROM mailbox WHERE address = '%s'");
    const r = spawnSync(NODE, [join(REPO_ROOT, 'dist', 'bin', 'postmap.js'), '-q', 'bob@example.com', `pgsql:${file}`], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, MAIL_CONFIG: tempDir({ 'main.cf': '', 'master.cf': '' }) } });
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, 'example.com/bob/,example.com/bob2/\n');
    assert.equal(r.status, 0);
  });
});

describe('mysql: tables (MariaDB)', { skip: needsServer('/usr/sbin/mariadbd', 'mariadb-server') }, () => {
  let db: DbServer;
  const dir = tempDir();
  const cf = (name: string, body: string) => {
    writeFileSync(join(dir, name), `hosts = 127.0.0.1:${db.port}\nuser = root\npassword =\ndbname = mail\n${body}\n`);
    return join(dir, name);
  };
  before(async () => {
    db = await startMariadb();
    await db.sql(`CREATE DATABASE mail; USE mail; ${CREATE};`);
    for (const r of ROWS) await db.sql('INSERT INTO mail.mailbox VALUES (?, ?, ?)', r);
  });
  after(async () => {
    closeSharedTables();
    await db?.stop();
  });
  sqlCases('mysql', cf);

  test('mysql: option_file and tls_* are refused (they would change how the connection is made)', () => {
    assert.throws(() => openTable(`mysql:${cf('tls.cf', "query = SELECT 1\ntls_verify_cert = yes")}`), /tls_verify_cert: not supported by Postactor/);
  });

  test('mysql: the server going down is a TableError, not a miss', async () => {
    const spec = `mysql:${cf('down.cf', "query = SELECT tag FROM mailbox WHERE address = '%s'")}`;
    assert.equal(await value(spec, 'alice@example.com'), 'a1');
    await db.down();
    await assert.rejects(async () => openTable(spec).lookup('alice@example.com'), TableError);
  });
});

describe('sqlite: tables (node:sqlite)', () => {
  const dir = tempDir();
  const dbpath = join(dir, 'mail.sqlite');
  const cf = (name: string, body: string) => {
    writeFileSync(join(dir, name), `dbpath = ${dbpath}\n${body}\n`);
    return join(dir, name);
  };
  before(() => {
    const db = new DatabaseSync(dbpath);
    db.exec(CREATE);
    const ins = db.prepare('INSERT INTO mailbox VALUES (?, ?, ?)');
    for (const r of ROWS) ins.run(...r);
    db.close();
  });
  after(() => closeSharedTables());
  sqlCases('sqlite', cf);

  test('sqlite: a missing database is a TableError', async () => {
    writeFileSync(join(dir, 'missing.cf'), `dbpath = ${join(dir, 'nope.sqlite')}\nquery = SELECT 1 WHERE '%s' = 'x'\n`);
    await assert.rejects(async () => openTable(`sqlite:${join(dir, 'missing.cf')}`).lookup('x'), TableError);
  });
});

describe('memcache: tables (memcached)', { skip: needsServer('/usr/bin/memcached', 'memcached') }, () => {
  let mc: { port: number; stop(): Promise<void> };
  const dir = tempDir();
  const set = (key: string, v: string) => new Promise<void>((resolve, reject) => {
    const s = net.connect(mc.port, '127.0.0.1', () => s.write(`set ${key} 0 0 ${Buffer.byteLength(v)}\r\n${v}\r\n`));
    s.on('data', (d) => { s.destroy(); if (d.toString().startsWith('STORED')) resolve(); else reject(new Error(d.toString())); });
    s.on('error', reject);
  });
  before(async () => {
    mc = await startMemcached();
    await set('alice@example.com', 'OK');
    await set('user:bob', 'REJECT go away');
  });
  after(async () => {
    closeSharedTables();
    await mc?.stop();
  });

  test('memcache: get KEY; key_format with %u; a miss is not found; keys memcached cannot carry are not looked up', async () => {
    writeFileSync(join(dir, 'mc.cf'), `memcache = inet:127.0.0.1:${mc.port}\n`);
    writeFileSync(join(dir, 'fmt.cf'), `memcache = inet:127.0.0.1:${mc.port}\nkey_format = user:%u\n`);
    assert.equal(await value(`memcache:${join(dir, 'mc.cf')}`, 'Alice@example.com'), 'OK');
    assert.equal(await value(`memcache:${join(dir, 'mc.cf')}`, 'nobody@example.com'), null);
    assert.equal(await value(`memcache:${join(dir, 'mc.cf')}`, 'has space'), null);
    assert.equal(await value(`memcache:${join(dir, 'fmt.cf')}`, 'bob@example.com'), 'REJECT go away');
    assert.equal(openTable(`memcache:${join(dir, 'fmt.cf')}`).kind, 'pattern');
    assert.deepEqual(await postmap(['-q', 'alice@example.com', `memcache:${join(dir, 'mc.cf')}`]), { code: 0, out: 'OK\n', err: '' });
  });

  test('memcache: a server that does not answer is a TableError after max_try', async () => {
    writeFileSync(join(dir, 'dead.cf'), 'memcache = inet:127.0.0.1:1\nmax_try = 2\nretry_pause = 0\n');
    await assert.rejects(async () => openTable(`memcache:${join(dir, 'dead.cf')}`).lookup('alice@example.com'), /memcache server inet:127\.0\.0\.1:1/);
    assert.throws(() => openTable(`memcache:${join(dir, 'nope.cf')}`), /cannot open/);
  });

  test('memcache: backup = a table memcached fronts: a miss asks it and stores its answer with ttl', async () => {
    const file = join(dir, 'source');
    writeFileSync(file, 'dave@example.com from-backup\n');
    writeFileSync(join(dir, 'backup.cf'), `memcache = inet:127.0.0.1:${mc.port}\nkey_format = bk:%s\nbackup = texthash:${file}\nttl = 60\n`);
    writeFileSync(join(dir, 'plain.cf'), `memcache = inet:127.0.0.1:${mc.port}\nkey_format = bk:%s\n`);
    assert.equal(await value(`memcache:${join(dir, 'plain.cf')}`, 'dave@example.com'), null, 'not in memcached yet');
    assert.equal(await value(`memcache:${join(dir, 'backup.cf')}`, 'dave@example.com'), 'from-backup');
    assert.equal(await value(`memcache:${join(dir, 'plain.cf')}`, 'dave@example.com'), 'from-backup', 'stored in memcached');
    assert.equal(await value(`memcache:${join(dir, 'backup.cf')}`, 'nobody@example.com'), null);
  });
});

/** A line server: `answer(request)` for each request read with `split`. */
function lineServer(split: (buf: Buffer) => { req: string; used: number } | null, answer: (req: string) => string | null): Promise<{ port: number; server: net.Server }> {
  const server = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (let r = split(buf); r; r = split(buf)) {
        buf = buf.subarray(r.used);
        const out = answer(r.req);
        if (out === null) { s.destroy(); return; }
        s.write(out);
      }
    });
    s.on('error', () => undefined);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as net.AddressInfo).port, server })));
}

describe('socketmap: and tcp: tables (servers written here)', () => {
  let sm: { port: number; server: net.Server };
  let tcp: { port: number; server: net.Server };
  const ns = (s: string) => `${Buffer.byteLength(s)}:${s},`;
  before(async () => {
    // The MTA-STS resolver's shape: "NAME KEY" → OK / NOTFOUND / TEMP / PERM.
    sm = await lineServer((b) => {
      const c = b.indexOf(':');
      if (c < 0) return null;
      const n = Number(b.subarray(0, c).toString());
      return b.length < c + n + 2 ? null : { req: b.subarray(c + 1, c + 1 + n).toString(), used: c + n + 2 };
    }, (req) => {
      const [name, key] = req.split(' ');
      if (name !== 'policy') return ns('PERM unknown map');
      if (key === 'example.com') return ns('OK secure match=mx.example.com');
      if (key === 'slow.test') return ns('TEMP try later');
      if (key === 'garbage.test') return 'xx';
      return ns('NOTFOUND ');
    });
    tcp = await lineServer((b) => {
      const nl = b.indexOf('\n');
      return nl < 0 ? null : { req: b.subarray(0, nl).toString(), used: nl + 1 };
    }, (req) => {
      const key = decodeURIComponent(req.replace(/^get /, ''));
      if (key === 'a b@example.com') return '200 has%20space\n';
      if (key === 'known') return '200 OK\n';
      if (key === 'busy') return '400 database busy\n';
      return '500 not found\n';
    });
  });
  after(() => {
    closeSharedTables();
    sm?.server.close();
    tcp?.server.close();
  });

  test('socketmap: OK is found, NOTFOUND a miss; TEMP, PERM and a malformed reply are TableErrors', async () => {
    const spec = `socketmap:inet:127.0.0.1:${sm.port}:policy`;
    assert.equal(await value(spec, 'Example.COM'), 'secure match=mx.example.com');
    assert.equal(await value(spec, 'other.test'), null);
    await assert.rejects(async () => openTable(spec).lookup('slow.test'), /temp socketmap error for key "slow.test": try later/);
    await assert.rejects(async () => openTable(`socketmap:inet:127.0.0.1:${sm.port}:other`).lookup('x'), /perm socketmap error/);
    await assert.rejects(async () => openTable(spec).lookup('garbage.test'), TableError);
    assert.equal(await value(spec, 'example.com'), 'secure match=mx.example.com', 'a new connection after a broken reply');
    assert.throws(() => openTable('socketmap:127.0.0.1:1'), /expected socketmap:inet:host:port:name/);
    assert.deepEqual(await postmap(['-q', 'example.com', spec]), { code: 0, out: 'secure match=mx.example.com\n', err: '' });
  });

  test('a domain list (relay_domains, virtual_mailbox_domains) with a server table: resolve awaits it; a failing one is 4.3.0, never "not ours"', async () => {
    const config = (extra: string) => buildConfig(null, `myhostname = mx.test\nmydestination = mx.test\nrelayhost =\n${extra}\n`, '');
    const c = config(`relay_domains = tcp:127.0.0.1:${tcp.port}\nvirtual_mailbox_domains = socketmap:inet:127.0.0.1:${sm.port}:policy`);
    const s = resolveSettings(c);
    assert.equal((await resolveAddress('u@known', s, openTables(c))).class, 'relay');
    assert.equal((await resolveAddress('u@example.com', s, openTables(c))).class, 'virtual-mailbox');
    assert.equal((await resolveAddress('u@elsewhere.test', s, openTables(c))).class, 'default');
    const broken = config(`relay_domains = tcp:127.0.0.1:${tcp.port}\nvirtual_mailbox_domains = socketmap:inet:127.0.0.1:${sm.port}:policy`);
    const r = await resolveAddress('u@slow.test', resolveSettings(broken), openTables(broken));
    assert.equal(r.transport, 'error');
    assert.equal(r.flags.error?.dsn, '4.3.0');
    assert.match(r.flags.warning ?? '', /temp socketmap error for key "slow.test"/);
  });

  test('tcp: 200 is found (%XX decoded), 500 a miss, 400 a TableError; keys are %XX encoded', async () => {
    const spec = `tcp:127.0.0.1:${tcp.port}`;
    assert.equal(await value(spec, 'known'), 'OK');
    assert.equal(await value(spec, 'a b@example.com'), 'has space');
    assert.equal(await value(spec, 'unknown'), null);
    await assert.rejects(async () => openTable(spec).lookup('busy'), /database busy/);
    await assert.rejects(async () => openTable('tcp:127.0.0.1:1').lookup('x'), TableError);
  });
});

describe('proxy: in one process (postmap, the master)', () => {
  const dir = tempDir();
  test('proxy: answers only for tables listed in proxy_read_maps; any other is refused as proxymap does', async () => {
    const file = join(dir, 'map');
    writeFileSync(file, 'alice@example.com OK\n');
    const pm = mainProxymap();
    pm.configure(`proxy:texthash:${file} $other`);
    assert.equal(await value(`proxy:texthash:${file}`, 'alice@example.com'), 'OK');
    pm.configure('');
    await assert.rejects(async () => openTable(`proxy:texthash:${file}`).lookup('alice@example.com'), new RegExp(`proxymap service is not configured for table "texthash:${file}"`));
    const main = tempDir({ 'main.cf': `proxy_read_maps = proxy:texthash:${file}\n`, 'master.cf': '' });
    const r = await postmap(['-c', main, '-q', 'alice@example.com', `proxy:texthash:${file}`]);
    assert.deepEqual(r, { code: 0, out: 'OK\n', err: '' });
    const denied = await postmap(['-c', tempDir({ 'main.cf': '', 'master.cf': '' }), '-q', 'alice@example.com', `proxy:texthash:${file}`]);
    assert.equal(denied.code, 1);
    assert.match(denied.err, /postmap: warning: proxymap: request for unapproved table: "texthash:.*"\npostmap: warning: proxymap: to approve this table for read-only access, list proxy:texthash:.* in main.cf:proxy_read_maps\npostmap: fatal: query error: proxymap service is not configured/);
  });
});
