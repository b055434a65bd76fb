/**
 * mailDate(): an RFC 5322 date in local time exactly as Postfix's mail_date() writes it, for the
 * Date: and Received: headers cleanup and smtpd add and for the Arrival-Date and Will-Retry-Until
 * fields of delivery status notifications.
 *
 * Postfix formats with strftime "%a, %e %b %Y %H:%M:%S " (%e: the day of the month padded with a
 * blank, "Thu,  3 Dec 2026"; %d only on systems without %e), then the UTC offset "+hhmm" it
 * computes from localtime() and gmtime(), then " (%Z)": the zone's abbreviation from the time
 * zone database ("UTC", "CET", "NST", "+1345").
 */
import { localZone } from './zone.js';

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "Thu,  3 Dec 2026 12:00:00 +0000 (UTC)": `ms` since the epoch in the local time zone. */
export function mailDate(ms: number): string {
  const zone = localZone(ms);
  // The wall clock: UTC shifted by the zone's offset, read with the UTC getters.
  const d = new Date(ms + zone.offset * 60_000);
  const two = (n: number) => (n < 10 ? '0' + n : String(n));
  const day = d.getUTCDate();
  // Postfix prints the offset's hours with "%+03d" and the minutes of its absolute value: -3:30
  // is "-0330".
  const sign = zone.offset < 0 ? '-' : '+';
  const abs = Math.abs(zone.offset);
  return `${DAYS[d.getUTCDay()]}, ${day < 10 ? ' ' + day : day} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} `
    + `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} `
    + `${sign}${two(Math.floor(abs / 60))}${two(abs % 60)}${zone.abbr ? ` (${zone.abbr})` : ''}`;
}
