// Tests for main.cf parsing and parameter semantics (expansion, defaults,
// typed getters), each case named for the Postfix behaviour it pins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConfigError, DEFAULTS, TIME_UNITS, configFromJSON, parseMainCf, parseTime, transportParam, type Config,
} from '../src/config/index.js';

const F = '/etc/x/main.cf';
const cfg = (params: Record<string, string>): Config =>
  configFromJSON({ configDirectory: '/etc/x', params, services: [] });

test('main.cf syntax', async (t) => {
  const cases: { name: string; text: string; want: Record<string, [string, number]> }[] = [
    { name: 'name = value, whitespace around = ignored', text: 'a=1\nb   =   two words  \n', want: { a: ['1', 1], b: ['two words', 2] } },
    { name: 'comment lines (# as first non-blank) ignored', text: '# c\n   # indented comment\na = 1 # not a comment\n', want: { a: ['1 # not a comment', 3] } },
    { name: 'blank lines ignored', text: '\n\n  \na = 1\n\n', want: { a: ['1', 4] } },
    { name: 'continuation lines joined with one space', text: 'a = x,\n   y,\n\ty\n', want: { a: ['x, y, y', 1] } },
    { name: 'comment inside continued entry skipped', text: 'a = x\n# c\n  y\n', want: { a: ['x y', 1] } },
    { name: 'later setting overrides earlier one', text: 'a = 1\nb = 2\na = 3\n', want: { a: ['3', 3], b: ['2', 2] } },
    { name: 'empty value allowed', text: 'relayhost =\n', want: { relayhost: ['', 1] } },
    { name: 'CRLF line ends', text: 'a = 1\r\nb = 2\r\n', want: { a: ['1', 1], b: ['2', 2] } },
    { name: '= inside value kept', text: 'a = b=c\n', want: { a: ['b=c', 1] } },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const r = parseMainCf(c.text, F);
      assert.deepEqual(r.errors, []);
      assert.deepEqual(Object.fromEntries([...r.params].map(([k, v]) => [k, [v.value, v.line]])), c.want);
    });
  }
});

test('main.cf errors carry file:line', async (t) => {
  const cases: { name: string; text: string; want: string[] }[] = [
    { name: 'line without =', text: 'a = 1\n\nfoo bar\n', want: [`${F}:3: missing '=' after attribute name: "foo"`] },
    { name: 'continuation before any parameter', text: '# c\n  x = 1\na = 1\n', want: [`${F}:2: continuation line before any parameter: "x = 1"`] },
    { name: 'missing name', text: 'a = 1\n= 2\n', want: [`${F}:2: missing attribute name: "= 2"`] },
    { name: 'bad parameter name', text: 'a b = 1\n', want: [`${F}:1: bad parameter name: "a b"`] },
    { name: 'all errors collected', text: 'x\ny\n', want: [`${F}:1: missing '=' after attribute name: "x"`, `${F}:2: missing '=' after attribute name: "y"`] },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const r = parseMainCf(c.text, F);
      assert.ok(r.errors.every((e) => e instanceof ConfigError));
      assert.deepEqual(r.errors.map((e) => e.message), c.want);
    });
  }
});

test('$-expansion forms', async (t) => {
  const base = { a: 'A', empty: '', nested: '$a-$a' };
  const cases: { name: string; value: string; want: string }[] = [
    { name: '$name', value: 'x $a y', want: 'x A y' },
    { name: '${name}', value: 'x${a}y', want: 'xAy' },
    { name: '$(name)', value: 'x$(a)y', want: 'xAy' },
    { name: '$$ is a literal $', value: 'cost $$a', want: 'cost $a' },
    { name: 'lone $ kept', value: 'a $ b', want: 'a $ b' },
    { name: '${name?value} when set', value: '${a?yes}', want: 'yes' },
    { name: '${name?value} when empty', value: '${empty?yes}', want: '' },
    { name: '${name:value} when empty', value: '${empty:fallback}', want: 'fallback' },
    { name: '${name:value} when set', value: '${a:fallback}', want: '' },
    { name: '${name:value} when undefined', value: '${nosuch:fallback}', want: 'fallback' },
    { name: '${name?{v1}:{v2}} true branch', value: '${a?{one}:{two}}', want: 'one' },
    { name: '${name?{v1}:{v2}} false branch, blanks around groups', value: '${empty?{one} : {two}}', want: 'two' },
    { name: 'conditional text is itself expanded', value: '${a?[$a]}', want: '[A]' },
    { name: 'recursive expansion of referenced values', value: '<$nested>', want: '<A-A>' },
    { name: 'stress idiom from Postfix defaults', value: '${stress?1}${stress:20}', want: '20' },
    { name: 'default values are expanded', value: '$mail_name', want: 'Postactor' },
  ];
  for (const c of cases) {
    await t.test(c.name, () => assert.equal(cfg({ ...base, v: c.value }).get('v'), c.want));
  }
});

test('unknown $name expands to empty with a warning', () => {
  const c = cfg({ v: 'a${nosuch}b' });
  assert.equal(c.get('v'), 'ab');
  assert.deepEqual(c.warnings, ['/etc/x/main.cf: undefined parameter: nosuch']);
});

test('recursive expansion is an error naming the loop', () => {
  const c = configFromJSON({
    configDirectory: '/etc/x', params: { a: '$b', b: 'x ${a}' }, services: [],
    origins: { a: { file: F, line: 4 }, b: { file: F, line: 5 } },
  });
  assert.throws(() => c.get('a'), (e: unknown) => e instanceof ConfigError && e.message === `${F}:4: recursive expansion: a -> b -> a`);
  assert.throws(() => cfg({ a: '$a' }).get('a'), /recursive expansion: a -> a/);
  // the config stays usable afterwards
  assert.equal(cfg({ a: '$b', b: '1' }).get('a'), '1');
});

test('get(): explicit, default, unknown', () => {
  const c = cfg({ myhostname: 'mx.example.org', custom: 'v' });
  assert.equal(c.get('custom'), 'v');
  assert.equal(c.get('myorigin'), 'mx.example.org');
  assert.equal(c.get('mydomain'), 'example.org', 'mydomain follows a configured myhostname');
  assert.equal(c.get('mydestination'), 'mx.example.org, localhost.example.org, localhost');
  assert.equal(c.get('config_directory'), '/etc/x', 'config_directory is the -c directory');
  assert.equal(c.raw('myorigin'), undefined);
  assert.equal(c.isSet('custom'), true);
  assert.equal(c.isSet('myorigin'), false);
  assert.throws(() => c.get('no_such_parameter'), /^ConfigError: \/etc\/x\/main\.cf: unknown parameter no_such_parameter$/);
});

test('defaults table has Postfix names and values (compatibility-level expressions as Postfix writes them)', () => {
  const want: Record<string, string> = {
    myorigin: '$myhostname', mydestination: '$myhostname, localhost.$mydomain, localhost',
    mynetworks_style: '${{$compatibility_level} <level {2} ? {subnet} : {host}}',
    relay_domains: '${{$compatibility_level} <level {2} ? {$mydestination} : {}}', mail_name: 'Postactor', message_size_limit: '10240000',
    smtpd_relay_restrictions: '${{$compatibility_level} <level {1} ? {} : {permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination}}',
    smtpd_hard_error_limit: '${stress?{1}:{20}}', maximal_queue_lifetime: '5d', delay_warning_time: '0h',
    queue_directory: '/var/spool/postactor', local_transport: 'local:$myhostname', notify_classes: 'resource, software',
    default_destination_concurrency_limit: '20', initial_destination_concurrency: '5',
    smtputf8_enable: '${{$compatibility_level} <level {1} ? {no} : {yes}}',
  };
  for (const [k, v] of Object.entries(want)) assert.equal(DEFAULTS[k], v, k);
  // Postactor behaves as compatibility level 3.6 unless main.cf says otherwise.
  const c = configFromJSON({ configDirectory: null, params: {}, services: [] });
  assert.equal(c.get('mynetworks_style'), 'host');
  assert.equal(c.get('relay_domains'), '');
  assert.equal(c.get('smtputf8_enable'), 'yes');
  assert.equal(c.get('smtpd_relay_restrictions'), 'permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination');
  const old = configFromJSON({ configDirectory: null, params: { compatibility_level: '0' }, services: [] });
  assert.equal(old.get('mynetworks_style'), 'subnet');
  assert.equal(old.get('relay_domains'), old.get('mydestination'));
  assert.match(DEFAULTS.myhostname!, /\./, 'myhostname is fully qualified');
  assert.equal(TIME_UNITS.maximal_queue_lifetime, 'd');
  assert.equal(TIME_UNITS.delay_warning_time, 'h');
  assert.equal(TIME_UNITS.smtpd_timeout, 's');
});

test('time values and units', async (t) => {
  const cases: [string, 's' | 'm' | 'h' | 'd' | 'w', number | null][] = [
    ['5d', 's', 432000], ['300', 's', 300], ['300s', 'd', 300], ['1h', 's', 3600], ['2m', 's', 120],
    ['1w', 's', 604800], ['5', 'd', 432000], ['0h', 's', 0], ['2', 'h', 7200],
    ['', 's', null], ['5x', 's', null], ['-1', 's', null], ['1.5h', 's', null], ['5 d', 's', null],
  ];
  for (const [v, u, want] of cases) await t.test(`parseTime(${JSON.stringify(v)}, ${u})`, () => assert.equal(parseTime(v, u), want));
  await t.test('bare number uses the parameter default unit', () => {
    const c = cfg({ maximal_queue_lifetime: '2', delay_warning_time: '4', queue_run_delay: '90' });
    assert.equal(c.getTime('maximal_queue_lifetime'), 2 * 86400);
    assert.equal(c.getTime('delay_warning_time'), 4 * 3600);
    assert.equal(c.getTime('queue_run_delay'), 90);
    assert.equal(c.getTime('bounce_queue_lifetime'), 5 * 86400);
    assert.equal(c.getTime('smtp_data_done_timeout'), 600);
  });
  await t.test('bad time is a file:line error', () => {
    const c = configFromJSON({ configDirectory: '/etc/x', params: { queue_run_delay: '5 minutes' }, services: [], origins: { queue_run_delay: { file: F, line: 9 } } });
    assert.throws(() => c.getTime('queue_run_delay'), { message: `${F}:9: bad time parameter value: queue_run_delay = 5 minutes` });
  });
});

test('typed getters', async (t) => {
  const c = configFromJSON({
    configDirectory: '/etc/x', services: [],
    params: { n: '42', neg: '-3', badn: '4x', b1: 'YES', b2: 'false', bb: 'maybe', list: ' a, b,,c\n d ', sz: '$n', badsz: '10k' },
    origins: { badn: { file: F, line: 3 } },
  });
  await t.test('getInt', () => {
    assert.equal(c.getInt('n'), 42);
    assert.equal(c.getInt('neg'), -3);
    assert.equal(c.getInt('smtpd_recipient_limit'), 1000);
    assert.throws(() => c.getInt('badn'), { message: `${F}:3: bad numerical parameter value: badn = 4x` });
  });
  await t.test('getBool (yes/no, true/false, case-insensitive)', () => {
    assert.equal(c.getBool('b1'), true);
    assert.equal(c.getBool('b2'), false);
    assert.equal(c.getBool('smtpd_delay_reject'), true);
    assert.throws(() => c.getBool('bb'), ConfigError);
  });
  await t.test('getSize (bytes, expanded)', () => {
    assert.equal(c.getSize('sz'), 42);
    assert.equal(c.getSize('message_size_limit'), 10240000);
    assert.throws(() => c.getSize('badsz'), /bad size parameter value: badsz = 10k/);
  });
  await t.test('getList splits on whitespace and commas', () => {
    assert.deepEqual(c.getList('list'), ['a', 'b', 'c', 'd']);
    assert.deepEqual(c.getList('relay_domains'), []);
    assert.deepEqual(c.getList('smtpd_relay_restrictions'), ['permit_mynetworks', 'permit_sasl_authenticated', 'defer_unauth_destination']);
  });
});

test('per-transport parameters fall back to default_*', async (t) => {
  const c = cfg({ smtp_destination_concurrency_limit: '7', default_destination_recipient_limit: '9', relay_destination_rate_delay: '2m' });
  const cases: [string, string, string][] = [
    ['smtp', 'destination_concurrency_limit', '7'],
    ['relay', 'destination_concurrency_limit', '20'],
    ['relay', 'destination_recipient_limit', '9'],
    ['smtp', 'initial_destination_concurrency', '5'],
    ['local', 'destination_concurrency_limit', '2'],
    ['local', 'destination_recipient_limit', '1'],
    ['smtp', 'recipient_limit', '20000'],
    ['relay', 'destination_rate_delay', '2m'],
  ];
  for (const [tr, suffix, want] of cases) {
    await t.test(`${tr}_${suffix}`, () => assert.equal(transportParam(c, tr, suffix), want));
  }
  await t.test('get() and getTime() know per-transport names', () => {
    assert.equal(c.get('foo_destination_concurrency_limit'), '20');
    assert.equal(c.getTime('relay_destination_rate_delay'), 120);
    assert.equal(c.getTime('smtp_destination_rate_delay'), 0);
  });
});

test('withOverrides applies -o values on top and toJSON round-trips', () => {
  const c = cfg({ a: '1', b: '$a' });
  const o = c.withOverrides({ a: '2', smtpd_timeout: '10s' }, { file: '/etc/x/master.cf', line: 3 });
  assert.equal(o.get('b'), '2');
  assert.equal(o.getTime('smtpd_timeout'), 10);
  assert.equal(c.get('b'), '1', 'original unchanged');
  const j = structuredClone(o.toJSON());
  const back = configFromJSON(j);
  assert.equal(back.get('b'), '2');
  assert.equal(back.raw('smtpd_timeout'), '10s');
  assert.throws(() => configFromJSON(structuredClone(c.withOverrides({ smtpd_timeout: 'x' }, { file: '/etc/x/master.cf', line: 3 }).toJSON())).getTime('smtpd_timeout'),
    { message: '/etc/x/master.cf:3: bad time parameter value: smtpd_timeout = x' });
});
