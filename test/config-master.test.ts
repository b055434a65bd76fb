// Tests for master.cf parsing (columns, '-' defaults, -o overrides, errors
// with line numbers), inet endpoints and service lookup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configFromJSON, inetEndpoint, parseMasterCf, type MasterService } from '../src/config/index.js';

const F = '/etc/x/master.cf';
const one = (text: string): MasterService => {
  const r = parseMasterCf(text, F);
  assert.deepEqual(r.errors.map((e) => e.message), []);
  assert.equal(r.services.length, 1);
  return r.services[0]!;
};

test('master.cf columns', async (t) => {
  const cases: { name: string; text: string; want: Partial<MasterService> }[] = [
    { name: "'-' means Postfix defaults (private y, unpriv y, chroot n, no wakeup, maxproc default)",
      text: 'smtp unix - - - - - smtp', want: { name: 'smtp', type: 'unix', private: true, unpriv: true, chroot: false, wakeup: 0, maxproc: null, command: 'smtp', args: [], overrides: {} } },
    { name: 'explicit y/n values', text: 'local unix y n y - 5 local', want: { private: true, unpriv: false, chroot: true, maxproc: 5 } },
    { name: 'wakeup seconds', text: 'pickup unix n - n 60 1 pickup', want: { wakeup: 60, maxproc: 1 } },
    { name: "wakeup with trailing '?' accepted", text: 'tlsmgr unix - - n 1000? 1 tlsmgr', want: { wakeup: 1000 } },
    { name: 'maxproc 0 = unlimited', text: 'cleanup unix n - n - 0 cleanup', want: { maxproc: 0 } },
    { name: 'inet host:port service', text: '127.0.0.1:2525 inet n - n - 2 smtpd', want: { name: '127.0.0.1:2525', type: 'inet' } },
    { name: 'command arguments kept in order', text: 'smtp inet n - n - - smtpd -v -D', want: { command: 'smtpd', args: ['-v', '-D'] } },
    { name: 'absolute command path', text: 'x unix - n n - - /usr/local/bin/x a', want: { command: '/usr/local/bin/x', args: ['a'] } },
    { name: 'unix-dgram, fifo and pass types', text: 'postlog unix-dgram n - n - 1 postlogd', want: { type: 'unix-dgram' } },
    { name: '-o name=value', text: 'submission inet n - n - - smtpd -o syslog_name=postfix/sub -o a=b=c',
      want: { args: [], overrides: { syslog_name: 'postfix/sub', a: 'b=c' } } },
    { name: '-o { name = value with spaces } (Postfix >= 3.0)', text: 'submission inet n - n - - smtpd -o { smtpd_reject_footer = call us, {now} } -v',
      want: { args: ['-v'], overrides: { smtpd_reject_footer: 'call us, {now}' } } },
    { name: '-oname=value (getopt form)', text: 'submission inet n - n - - smtpd -osmtpd_tls_security_level=encrypt', want: { overrides: { smtpd_tls_security_level: 'encrypt' } } },
    { name: '{ } around a command argument', text: 'p unix - n n - - pipe argv=x { a b }', want: { args: ['argv=x', 'a b'] } },
    { name: 'continuation lines (leading whitespace) and comments between them', text: '# c\nsubmission inet n - n - - smtpd\n  # note\n  -o a=1\n\t-o b=2\n',
      want: { overrides: { a: '1', b: '2' }, line: 2 } },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const s = one(c.text);
      for (const [k, v] of Object.entries(c.want)) assert.deepEqual(s[k as keyof MasterService], v, k);
      assert.equal(s.file, F);
    });
  }
});

test('master.cf errors name the problem with file:line', async (t) => {
  const good = 'smtp inet n - n - - smtpd\n';
  const cases: { name: string; text: string; want: string }[] = [
    { name: 'too few columns', text: good + 'cleanup unix n - n -\n', want: `${F}:2: missing "maxproc" field` },
    { name: 'missing command', text: good + '\n# c\ncleanup unix n - n - 0\n', want: `${F}:4: missing "command" field` },
    { name: 'bad transport type', text: good + 'x foo n - n - - x\n', want: `${F}:2: bad transport type: foo` },
    { name: 'bad private value', text: 'x unix yes - n - - x\n', want: `${F}:1: field "private": bad value: "yes"` },
    { name: 'bad unpriv value', text: 'x unix - 1 n - - x\n', want: `${F}:1: field "unpriv": bad value: "1"` },
    { name: 'bad chroot value', text: 'x unix - - Y - - x\n', want: `${F}:1: field "chroot": bad value: "Y"` },
    { name: 'bad wakeup time', text: good + good.replace('smtp inet', 'q unix').replace('- - smtpd', 'x 1 qmgr'), want: `${F}:2: bad wakeup time: x` },
    { name: 'negative wakeup', text: 'q unix n - n -5 1 qmgr\n', want: `${F}:1: bad wakeup time: -5` },
    { name: 'bad process count', text: good + 'c unix n - n - many cleanup\n', want: `${F}:2: bad process count: many` },
    { name: 'duplicate service name and type', text: good + '\nsmtp inet n - n - 3 smtpd\n', want: `${F}:3: duplicate service name: smtp/inet (first defined at line 1)` },
    { name: '-o without name=value', text: 'submission inet n - n - - smtpd -o foo\n', want: `${F}:1: missing '=' in -o foo` },
    { name: '-o at end of line', text: 'submission inet n - n - - smtpd -o\n', want: `${F}:1: missing name=value after -o` },
    { name: 'unbalanced {', text: 'submission inet n - n - - smtpd -o { a = b\n', want: `${F}:1: missing '}' in "{ a = b"` },
    { name: 'bad inet port', text: 'host:99999 inet n - n - - smtpd\n', want: `${F}:1: bad inet service port: host:99999` },
    { name: 'continuation before any service', text: '  -o a=b\n', want: `${F}:1: continuation line before any service: "-o a=b"` },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const r = parseMasterCf(c.text, F);
      assert.deepEqual(r.errors.map((e) => e.message), [c.want]);
    });
  }
  await t.test('same name with another type is not a duplicate', () => {
    assert.equal(parseMasterCf('smtp inet n - n - - smtpd\nsmtp unix - - n - - smtp\n', F).errors.length, 0);
  });
});

test('inetEndpoint', async (t) => {
  const svc = (name: string): MasterService => ({ ...one(`${name} inet n - n - - smtpd`) });
  const cases: [string, string | null, number][] = [
    ['smtp', null, 25], ['submission', null, 587], ['smtps', null, 465], ['submissions', null, 465],
    ['2525', null, 2525], ['127.0.0.1:2525', '127.0.0.1', 2525], ['localhost:smtp', 'localhost', 25],
    ['[::1]:2526', '::1', 2526], ['*:25', null, 25], ['0.0.0.0:587', '0.0.0.0', 587],
  ];
  for (const [name, host, port] of cases) {
    await t.test(name, () => assert.deepEqual(inetEndpoint(svc(name)), { host, port }));
  }
  await t.test('bad endpoint is a ConfigError with file:line', () => {
    const s: MasterService = { ...svc('smtp'), name: 'nosuchservice', line: 7 };
    assert.throws(() => inetEndpoint(s), { name: 'ConfigError', message: `${F}:7: unknown service: nosuchservice/tcp` });
    assert.throws(() => inetEndpoint({ ...s, name: '::1:25' }), /IPv6 needs \[brackets\]/);
  });
});

test('Config.service lookup', () => {
  const { services } = parseMasterCf([
    '127.0.0.1:2525 inet n - n - 2 smtpd',
    '[::1]:smtp inet n - n - 2 smtpd',
    'smtp unix - - n - 2 smtp',
    'cleanup unix n - n - 0 cleanup',
  ].join('\n'), F);
  const c = configFromJSON({ configDirectory: '/etc/x', params: {}, services });
  assert.equal(c.service('cleanup')?.command, 'cleanup');
  assert.equal(c.service('smtp', 'unix')?.command, 'smtp');
  assert.equal(c.service('smtp', 'inet')?.name, '[::1]:smtp', 'inet matches the port part of host:port');
  assert.equal(c.service('2525', 'inet')?.name, '127.0.0.1:2525');
  assert.equal(c.service('127.0.0.1:2525')?.type, 'inet');
  assert.equal(c.service('cleanup', 'inet'), undefined);
  assert.equal(c.service('nope'), undefined);
});
