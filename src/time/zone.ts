/**
 * The local time zone at an instant as the C library's localtime() and strftime("%Z") give it to
 * Postfix: the UTC offset and the abbreviation ("UTC", "CET", "CEST", "NST", "+1345"), read from
 * the same place the C library reads them, the TZif file (RFC 8536) named by TZ or /etc/localtime.
 * JavaScript has no such call: Intl's short names are locale data ("GMT+1" for CET in en-US), and
 * its offsets come from ICU's own copy of the zone data, which may be older than the system's.
 *
 * A TZ that is a POSIX rule ("EST5EDT", "<+1345>-13:45") names its abbreviations itself. Without
 * a readable zone file the Intl name is the fallback.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';

interface ZoneType { offset: number; dst: boolean; abbr: string }

/** A POSIX TZ rule, as a TZ value or the footer of a TZif file: its names and standard offset. */
interface Rule { std: string; stdOffset: number; dst: string | null }

interface Zone {
  /** Transition times (seconds since the epoch, ascending) and the type in effect from each. */
  times: number[];
  types: number[];
  infos: ZoneType[];
  /** What applies after the last transition (or always, for a TZ rule). */
  rule: Rule | null;
}

let cached: { tz: string | undefined; zone: Zone | null } | null = null;
let intl: Intl.DateTimeFormat | null = null;

/** The local time zone at `ms` since the epoch: its abbreviation and UTC offset (minutes east). */
export function localZone(ms: number): { abbr: string; offset: number } {
  const tz = process.env.TZ;
  if (cached === null || cached.tz !== tz) cached = { tz, zone: loadZone(tz) };
  const zone = cached.zone;
  // JavaScript's own offset (ICU's copy of the zone data): for what the zone file cannot answer.
  const jsOffset = () => -new Date(ms).getTimezoneOffset();
  if (!zone) {
    intl ??= new Intl.DateTimeFormat('en-US', { timeZoneName: 'short' });
    return { abbr: intl.formatToParts(ms).find((p) => p.type === 'timeZoneName')?.value ?? '', offset: jsOffset() };
  }
  const t = Math.floor(ms / 1000);
  const n = zone.times.length;
  if (n > 0 && t >= zone.times[0]! && (t < zone.times[n - 1]! || !zone.rule)) {
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (zone.times[mid]! <= t) lo = mid;
      else hi = mid - 1;
    }
    const info = zone.infos[zone.types[lo]!]!;
    return { abbr: info.abbr, offset: info.offset };
  }
  if (zone.rule && (n === 0 || t >= zone.times[n - 1]!)) {
    // Past the table: the rule decides. Without daylight saving it is the standard time; with it,
    // which half applies is what JavaScript's offset says (its rules are the same rules).
    const { std, stdOffset, dst } = zone.rule;
    if (dst === null) return { abbr: std, offset: stdOffset };
    const offset = jsOffset();
    return { abbr: offset !== stdOffset ? dst : std, offset };
  }
  // Before the first transition: the first standard-time type (RFC 8536 section 3.2).
  const first = zone.infos.find((i) => !i.dst) ?? zone.infos[0];
  return first ? { abbr: first.abbr, offset: first.offset } : { abbr: '', offset: jsOffset() };
}

function loadZone(tz: string | undefined): Zone | null {
  // The C library: no TZ reads /etc/localtime (UTC without it); an empty TZ is UTC.
  if (tz === undefined) return existsSync('/etc/localtime') ? readZoneFile('/etc/localtime') : utc();
  if (tz === '') return utc();
  const name = tz.startsWith(':') ? tz.slice(1) : tz;
  const file = isAbsolute(name) ? name : join(process.env.TZDIR || '/usr/share/zoneinfo', name);
  if (!name.includes('..') && existsSync(file)) return readZoneFile(file);
  const rule = parseRule(name);
  return rule ? { times: [], types: [], infos: [], rule } : null;
}

function utc(): Zone {
  return { times: [], types: [], infos: [], rule: { std: 'UTC', stdOffset: 0, dst: null } };
}

/** A TZif file: the 64-bit data block of version 2 and later (the 32-bit one of version 1). */
function readZoneFile(file: string): Zone | null {
  let buf: Buffer;
  try { buf = readFileSync(file); } catch { return null; }
  if (buf.length < 44 || buf.toString('latin1', 0, 4) !== 'TZif') return null;
  const counts = (at: number) => [0, 1, 2, 3, 4, 5].map((i) => buf.readUInt32BE(at + 20 + i * 4)) as [number, number, number, number, number, number];
  let [isut, isstd, leap, timecnt, typecnt, charcnt] = counts(0);
  let pos = 44;
  let wide = false;
  if (buf[4]! >= 0x32) {
    // Skip the version 1 block; the second header and its 64-bit block follow.
    pos += timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
    if (buf.length < pos + 44 || buf.toString('latin1', pos, pos + 4) !== 'TZif') return null;
    [isut, isstd, leap, timecnt, typecnt, charcnt] = counts(pos);
    pos += 44;
    wide = true;
  }
  const size = wide ? 8 : 4;
  const end = pos + timecnt * (size + 1) + typecnt * 6 + charcnt + leap * (size + 4) + isstd + isut;
  if (buf.length < end || typecnt === 0) return null;
  const times: number[] = [];
  for (let i = 0; i < timecnt; i++) times.push(wide ? Number(buf.readBigInt64BE(pos + i * 8)) : buf.readInt32BE(pos + i * 4));
  pos += timecnt * size;
  const types = [...buf.subarray(pos, pos + timecnt)];
  pos += timecnt;
  const chars = buf.subarray(pos + typecnt * 6, pos + typecnt * 6 + charcnt);
  const infos: ZoneType[] = [];
  for (let i = 0; i < typecnt; i++) {
    const at = pos + i * 6;
    const from = buf[at + 5]!;
    const nul = chars.indexOf(0, from);
    infos.push({ offset: buf.readInt32BE(at) / 60, dst: buf[at + 4] === 1, abbr: chars.toString('latin1', from, nul < 0 ? chars.length : nul) });
  }
  if (types.some((t) => t >= typecnt)) return null;
  let rule: Rule | null = null;
  if (wide && buf[end] === 0x0a) {
    const nl = buf.indexOf(0x0a, end + 1);
    if (nl > end + 1) rule = parseRule(buf.toString('latin1', end + 1, nl));
  }
  return { times, types, infos, rule };
}

/** "STDoffset[DST[offset][,start,end]]": the names and the standard offset (minutes east). */
function parseRule(s: string): Rule | null {
  const m = /^(<[^>]+>|[A-Za-z]{3,})([+-]?)(\d{1,3})(?::(\d{1,2}))?(?::\d{1,2})?(<[^>]+>|[A-Za-z]{3,})?/.exec(s);
  if (!m) return null;
  const bare = (n: string) => (n.startsWith('<') ? n.slice(1, -1) : n);
  // POSIX offsets count west of UTC: "EST5" is UTC-5.
  const west = Number(m[3]) * 60 + Number(m[4] ?? 0);
  return { std: bare(m[1]!), stdOffset: m[2] === '-' ? west : -west, dst: m[5] ? bare(m[5]) : null };
}
