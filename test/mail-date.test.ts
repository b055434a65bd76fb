/**
 * mailDate() (src/time/mail-date.ts) against the C library Postfix's mail_date() calls: GNU
 * date(1) formats the same instant with mail_date()'s strftime "%a, %e %b %Y %H:%M:%S %z (%Z)".
 * Each zone runs in a child process with its own TZ, on days before and after the 10th (%e pads
 * with a blank), at daylight-saving changes, past the end of the zone file's table (its POSIX
 * rule), and in zones with odd offsets (-0330, +1345, +0545).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './helpers/server.js';

const INSTANTS = [
  Date.UTC(2026, 11, 3, 12, 0, 0),    // the 3rd
  Date.UTC(2026, 11, 28, 23, 30, 0),  // the 28th, the 29th east of UTC
  Date.UTC(2027, 0, 1, 9, 5, 7),      // the 1st, a new year somewhere
  Date.UTC(2026, 2, 29, 1, 30, 0),    // Europe's spring change
  Date.UTC(2026, 9, 25, 0, 59, 59),   // a second before Europe's autumn change
  Date.UTC(2026, 3, 5, 14, 0, 0),     // the southern hemisphere's change (Chatham, Sydney)
  Date.UTC(2045, 6, 9, 10, 0, 0),     // past the table of transitions
];
const ZONES = ['UTC', 'Europe/Berlin', 'America/St_Johns', 'Pacific/Chatham', 'Asia/Kathmandu', 'Australia/Sydney', 'America/New_York', 'EST5EDT'];
const MODULE = join(REPO_ROOT, 'dist', 'src', 'time', 'mail-date.js');

function ours(tz: string): string[] {
  const script = `import(${JSON.stringify(MODULE)}).then((m) => { for (const t of ${JSON.stringify(INSTANTS)}) console.log(m.mailDate(t)); })`;
  return execFileSync(process.execPath, ['-e', script], { env: { ...process.env, TZ: tz }, encoding: 'utf8' }).trimEnd().split('\n');
}

function strftime(tz: string, ms: number): string {
  return execFileSync('date', ['-d', `@${ms / 1000}`, '+%a, %e %b %Y %H:%M:%S %z (%Z)'], { env: { ...process.env, TZ: tz, LC_ALL: 'C' }, encoding: 'utf8' }).trimEnd();
}

describe('mailDate: Postfix\'s mail_date() form in any zone and on any day', () => {
  for (const tz of ZONES) {
    test(`TZ=${tz}`, () => {
      assert.deepEqual(ours(tz), INSTANTS.map((t) => strftime(tz, t)));
    });
  }

  test('the day of the month before the 10th is padded with a blank, not a zero', () => {
    assert.equal(ours('UTC')[0], 'Thu,  3 Dec 2026 12:00:00 +0000 (UTC)');
    assert.equal(ours('America/St_Johns')[0], 'Thu,  3 Dec 2026 08:30:00 -0330 (NST)');
    assert.equal(ours('Pacific/Chatham')[0], 'Fri,  4 Dec 2026 01:45:00 +1345 (+1345)');
  });
});
