// Tests for loadConfig(): the embedded default, configuration directories
// (-c DIR and POSTACTOR_CONFIG), missing files, load-time validation and
// postconf-style warnings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConfigError, EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF, configFromJSON, inetEndpoint, loadConfig, queueDirectory, transportParam,
} from '../src/config/index.js';
import { tempDirs } from './helpers/temp.js';

// Tests run from dist/test/; fixtures stay in the source tree.
const FIX = fileURLToPath(new URL('../../test/fixtures/config/', import.meta.url));


const tempDir = tempDirs('postactor-config-');

/** Runs fn with POSTACTOR_CONFIG = value (unset if undefined) and MAIL_CONFIG unset (it comes first). */
function withEnv<T>(value: string | undefined, fn: () => T): T {
  const saved = process.env.POSTACTOR_CONFIG;
  const savedMail = process.env.MAIL_CONFIG;
  delete process.env.MAIL_CONFIG;
  if (value === undefined) delete process.env.POSTACTOR_CONFIG;
  else process.env.POSTACTOR_CONFIG = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.POSTACTOR_CONFIG;
    else process.env.POSTACTOR_CONFIG = saved;
    if (savedMail !== undefined) process.env.MAIL_CONFIG = savedMail;
  }
}

test('embedded default configuration', async (t) => {
  const c = withEnv(undefined, () => loadConfig());
  await t.test('is used without -c or POSTACTOR_CONFIG', () => assert.equal(c.configDirectory, null));
  await t.test('sends all mail to the local sink [127.0.0.1]:2626', () => assert.equal(c.get('relayhost'), '[127.0.0.1]:2626'));
  await t.test('relative queue_directory resolved against the working directory', () => {
    assert.equal(c.get('queue_directory'), 'var/spool');
    // Relative to the project's root, whatever the working directory.
    assert.equal(queueDirectory(c), fileURLToPath(new URL('../../var/spool', import.meta.url)));
  });
  await t.test('mydestination and mynetworks stay at Postfix defaults', () => {
    assert.equal(c.isSet('mydestination'), false);
    assert.equal(c.get('mynetworks'), '');
    assert.equal(c.get('mynetworks_style'), 'host');
    assert.equal(c.get('maillog_file'), '');
  });
  await t.test('loads without warnings', () => assert.deepEqual(c.warnings, []));
  await t.test('has the embedded services', () => {
    assert.deepEqual(c.services.map((s) => [s.name, s.type, s.command, s.maxproc, s.wakeup]), [
      ['127.0.0.1:2525', 'inet', 'smtpd', 2, 0],
      ['cleanup', 'unix', 'cleanup', 0, 0],
      ['qmgr', 'unix', 'qmgr', 1, 300],
      ['smtp', 'unix', 'smtp', 2, 0],
      ['relay', 'unix', 'smtp', 1, 0],
      ['bounce', 'unix', 'bounce', 1, 0],
      ['flush', 'unix', 'flush', 0, 1000],
      ['pickup', 'unix', 'pickup', 1, 60],
      ['rewrite', 'unix', 'trivial-rewrite', 1, 0],
      ['local', 'unix', 'local', null, 0],
      ['virtual', 'unix', 'virtual', null, 0],
      ['error', 'unix', 'error', 1, 0],
      ['retry', 'unix', 'error', 1, 0],
      ['discard', 'unix', 'discard', 1, 0],
    ]);
    assert.deepEqual(inetEndpoint(c.service('2525', 'inet')!), { host: '127.0.0.1', port: 2525 });
  });
  await t.test('explicit null also means embedded', () => {
    assert.equal(withEnv(undefined, () => loadConfig(null)).get('relayhost'), '[127.0.0.1]:2626');
  });
  await t.test('embedded text is exported', () => {
    assert.match(EMBEDDED_MAIN_CF, /^relayhost = \[127\.0\.0\.1\]:2626$/m);
    assert.match(EMBEDDED_MASTER_CF, /^qmgr\s+unix\s+n\s+-\s+n\s+300\s+1\s+qmgr$/m);
  });
});

test('loadConfig(dir) reads DIR/main.cf and DIR/master.cf', async (t) => {
  const dir = path.join(FIX, 'basic');
  const c = withEnv(undefined, () => loadConfig(dir));
  await t.test('values, continuation lines, override order', () => {
    assert.equal(c.configDirectory, dir.replace(/\/$/, ''));
    assert.equal(c.get('config_directory'), c.configDirectory);
    assert.equal(c.get('mydestination'), 'mail.example.com, localhost.example.com, localhost');
    assert.equal(c.getSize('message_size_limit'), 30720000);
    assert.equal(c.get('relayhost'), '');
    assert.equal(c.getTime('maximal_queue_lifetime'), 2 * 86400);
    assert.equal(transportParam(c, 'smtp', 'destination_concurrency_limit'), '7');
    assert.equal(transportParam(c, 'relay', 'destination_concurrency_limit'), '20');
  });
  await t.test('services and -o overrides', () => {
    const sub = c.service('submission', 'inet')!;
    assert.deepEqual(sub.overrides, {
      syslog_name: 'postfix/submission', smtpd_client_restrictions: '$mua_client_restrictions',
      postscreen_reject_footer: 'Contact: postmaster, please', bogus_option: '1',
    });
    assert.equal(sub.line, 3);
    const sc = c.withOverrides(sub.overrides);
    assert.deepEqual(sc.getList('smtpd_client_restrictions'), ['permit_sasl_authenticated', 'reject']);
    assert.equal(c.get('smtpd_client_restrictions'), '');
    assert.equal(c.service('tlsmgr')!.wakeup, 1000);
    assert.deepEqual(inetEndpoint(c.service('2526', 'inet')!), { host: '::1', port: 2526 });
  });
  await t.test('postconf-style warnings for unused parameters; "not supported" for a known one Postactor ignores', () => {
    assert.deepEqual(c.warnings, [
      `${path.join(dir, "main.cf")}: unused parameter: my_unused_thing=42`,
      `${path.join(dir, "master.cf")}: unused parameter: bogus_option=1`,
      `${path.join(dir, "master.cf")}:3: postscreen_reject_footer = Contact: postmaster, please: not supported by Postactor, ignored`,
    ]);
  });
  await t.test('toJSON survives structuredClone', () => {
    const back = configFromJSON(structuredClone(c.toJSON()));
    assert.equal(back.get('mydestination'), c.get('mydestination'));
    assert.deepEqual(back.services, c.services);
    assert.deepEqual(back.warnings, c.warnings);
  });
});

test('POSTACTOR_CONFIG selects the directory; -c DIR wins over it', () => {
  const a = tempDir({ 'main.cf': 'myhostname = a.example\n', 'master.cf': EMBEDDED_MASTER_CF });
  const b = tempDir({ 'main.cf': 'myhostname = b.example\n', 'master.cf': EMBEDDED_MASTER_CF });
  assert.equal(withEnv(a, () => loadConfig()).get('myhostname'), 'a.example');
  assert.equal(withEnv(a, () => loadConfig(null)).get('myhostname'), 'a.example');
  assert.equal(withEnv(a, () => loadConfig(b)).get('myhostname'), 'b.example');
  assert.equal(withEnv(a, () => loadConfig(b)).configDirectory, b);
  // a directory's main.cf does not inherit the embedded settings
  assert.equal(withEnv(a, () => loadConfig()).get('queue_directory'), '/var/spool/postactor', 'not Postfix\'s /var/spool/postfix');
});

test('missing files are errors (Postfix needs both main.cf and master.cf)', async (t) => {
  await t.test('missing master.cf', () => {
    const dir = path.join(FIX, 'only-main');
    assert.throws(() => loadConfig(dir), { name: 'ConfigError', message: `${path.join(dir, 'master.cf')}: file not found` });
  });
  await t.test('missing both', () => {
    const dir = tempDir({});
    assert.throws(() => loadConfig(dir), { message: `${dir}/main.cf: file not found\n${dir}/master.cf: file not found` });
  });
  await t.test('missing directory', () => {
    const dir = path.join(os.tmpdir(), 'postactor-no-such-dir-' + process.pid);
    assert.throws(() => loadConfig(dir), { message: `${dir}: configuration directory not found` });
  });
});

test('any bad line stops loading, with file:line', async (t) => {
  await t.test('bad main.cf line', () => {
    const dir = path.join(FIX, 'bad-main');
    assert.throws(() => loadConfig(dir), { message: `${path.join(dir, 'main.cf')}:4: missing '=' after attribute name: "this"` });
  });
  await t.test('bad master.cf line', () => {
    const dir = path.join(FIX, 'bad-master');
    assert.throws(() => loadConfig(dir), { message: `${path.join(dir, 'master.cf')}:3: bad process count: many` });
  });
  const cases: { name: string; main: string; master?: string; want: (dir: string) => string }[] = [
    { name: 'recursive expansion', main: 'a = $b\nb = $a\n', want: (d) => `${d}/main.cf:1: recursive expansion: a -> b -> a\n${d}/main.cf:2: recursive expansion: b -> a -> b` },
    { name: 'bad number in a known numeric parameter', main: '\nmessage_size_limit = 10MB\n', want: (d) => `${d}/main.cf:2: bad numerical parameter value: message_size_limit = 10MB` },
    { name: 'bad time in a known time parameter', main: 'queue_run_delay = soon\n', want: (d) => `${d}/main.cf:1: bad time parameter value: queue_run_delay = soon` },
    { name: 'bad boolean', main: 'smtpd_helo_required = perhaps\n', want: (d) => `${d}/main.cf:1: bad boolean parameter value: smtpd_helo_required = perhaps` },
    { name: 'bad per-transport number', main: 'smtp_destination_concurrency_limit = x\n', want: (d) => `${d}/main.cf:1: bad numerical parameter value: smtp_destination_concurrency_limit = x` },
    { name: 'bad -o value points at master.cf', main: '', master: 'smtp inet n - n - - smtpd\n  -o smtpd_timeout=forever\n',
      want: (d) => `${d}/master.cf:1: bad time parameter value: smtpd_timeout = forever` },
    { name: 'bad relational expression', main: 'a = ${{$x} =~ {y} ? {1} : {2}}\n', want: (d) => `${d}/main.cf:1: parameter a: bad relational expression: "\${{$x} =~ {y} ? {1} : {2}}"` },
    { name: 'value below its Postfix bound', main: 'smtpd_recipient_limit = -3\n', want: (d) => `${d}/main.cf:1: bad numerical parameter value: smtpd_recipient_limit = -3 (must be at least 1)` },
    { name: 'a word outside a name mask', main: 'notify_classes = resource, sofware\n', want: (d) => `${d}/main.cf:1: bad parameter value: notify_classes = resource, sofware (unknown "sofware"; one of: bounce, 2bounce, data, delay, policy, protocol, resource, software)` },
    { name: 'process limit below its bound', main: 'default_process_limit = -1\n', want: (d) => `${d}/main.cf:1: bad numerical parameter value: default_process_limit = -1 (must be at least 1)` },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const dir = tempDir({ 'main.cf': c.main, 'master.cf': c.master ?? EMBEDDED_MASTER_CF });
      assert.throws(() => loadConfig(dir), (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.equal(e.message, c.want(dir));
        return true;
      });
    });
  }
});
