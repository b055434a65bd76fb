/**
 * anvil's statistics (Postfix's anvil_status_dump), run in master: every
 * anvil_status_update_time, and when the mail system stops, the peak connection count and
 * rates since the last report, each for the client that reached it, over every smtpd service's
 * table. Only non-zero peaks are logged, then they start again from zero. Master also sweeps the
 * tables here, so expired clients free their slots.
 */
import { maillog } from '../log/maillog.js';
import { AnvilTable, type Peak, type Peaks } from './table.js';

const log = maillog('anvil');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** ctime(3) + 4, first 15 characters: "Dec  3 08:57:37" (local time, as anvil). */
function ctime15(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** The tables of every smtpd service, by master.cf service name, for the server's life. */
export class AnvilTables {
  private readonly tables = new Map<string, AnvilTable>();
  private timer: NodeJS.Timeout | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  private unit = 60;

  /** The table of a service (made on first use; a reload keeps it, so counts stay right). */
  of(service: string): AnvilTable {
    let t = this.tables.get(service);
    if (!t) this.tables.set(service, (t = AnvilTable.create(this.unit)));
    return t;
  }

  /** (Re)starts the periodic work with anvil_rate_time_unit and anvil_status_update_time (seconds). */
  start(unitSeconds: number, statusSeconds: number): void {
    this.stop();
    this.unit = unitSeconds;
    for (const t of this.tables.values()) t.setUnit(unitSeconds);
    this.timer = setInterval(() => this.dump(), statusSeconds * 1000);
    this.timer.unref();
    this.sweeper = setInterval(() => { for (const t of this.tables.values()) t.sweep(); }, Math.max(1, Math.min(unitSeconds, 60)) * 1000);
    this.sweeper.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.sweeper) clearInterval(this.sweeper);
    this.timer = this.sweeper = null;
  }

  /** Logs and resets the peaks (anvil_status_dump). */
  dump(): void {
    const all: Peaks[] = [...this.tables].map(([service, t]) => t.takePeaks(service));
    const top = (pick: (p: Peaks) => Peak | null): Peak | null =>
      all.map(pick).reduce<Peak | null>((a, b) => (b && (!a || b.value > a.value) ? b : a), null);
    const rate = (p: Peak | null, name: string) => {
      if (p) log.info(`statistics: max ${name} rate ${p.value}/${this.unit}s for (${p.ident}) at ${ctime15(p.when)}`);
    };
    rate(top((p) => p.connectionRate), 'connection');
    const count = top((p) => p.connectionCount);
    if (count) log.info(`statistics: max connection count ${count.value} for (${count.ident}) at ${ctime15(count.when)}`);
    rate(top((p) => p.messageRate), 'message');
    rate(top((p) => p.recipientRate), 'recipient');
    rate(top((p) => p.newtlsRate), 'newtls');
    rate(top((p) => p.authRate), 'auth');
    // One anvil process serves every service in Postfix: its cache size is the sum.
    const caches = all.map((p) => p.cacheSize).filter((c): c is { value: number; when: number } => c !== null);
    if (caches.length) {
      const when = Math.max(...caches.map((c) => c.when));
      log.info(`statistics: max cache size ${caches.reduce((a, c) => a + c.value, 0)} at ${ctime15(when)}`);
    }
  }
}
