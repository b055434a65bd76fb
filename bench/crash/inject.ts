/**
 * The crash soak's load: SMTP sessions that send uniquely numbered messages one after the other
 * and record which of them got "250 … queued as" — the messages the server promised to deliver.
 *
 * Each session reconnects on its own whenever the server goes away (a SIGKILL mid-dialogue) and
 * carries on with a fresh ID: a message whose 250 never arrived is not counted as acknowledged,
 * whatever became of it. Message-ID: <ID@crash.bench>; the sink reads it back.
 */
import net from 'node:net';

export interface InjectorOptions {
  port: number;
  sessions: number;
  /** Bytes of body per message (besides the headers). */
  size: number;
}

/** One reply: code and the last line. */
interface Reply {
  code: number;
  line: string;
}

/** A minimal SMTP client session: one command, one (possibly multi-line) reply. */
class Session {
  private buf = '';
  private waiting: ((r: Reply | null) => void) | null = null;
  private closed = false;

  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.deliver();
    });
    const gone = (): void => {
      this.closed = true;
      const w = this.waiting;
      this.waiting = null;
      w?.(null);
    };
    sock.on('close', gone);
    sock.on('error', gone);
  }

  static open(port: number): Promise<Session | null> {
    return new Promise((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port });
      const fail = (): void => resolve(null);
      sock.once('error', fail);
      sock.once('connect', () => {
        sock.off('error', fail);
        resolve(new Session(sock));
      });
    });
  }

  /** The next complete reply, or null when the connection is gone (or 10 s pass). */
  read(): Promise<Reply | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        this.sock.destroy();
        resolve(null);
      }, 10_000);
      this.waiting = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
      if (this.closed) return this.waiting(null);
      this.deliver();
    });
  }

  async cmd(text: string): Promise<Reply | null> {
    if (this.closed) return null;
    this.sock.write(text);
    return this.read();
  }

  close(): void {
    this.sock.destroy();
  }

  private deliver(): void {
    if (!this.waiting) return;
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl < 0) return;
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      if (line.length >= 4 && line[3] === '-') continue; // continuation of a multi-line reply
      const w = this.waiting;
      this.waiting = null;
      w({ code: Number(line.slice(0, 3)), line });
      return;
    }
  }
}

/**
 * Sessions sending until stop(): acked holds every ID that got its 250, attempted counts the
 * messages whose DATA went out. IDs are `${prefix}${session}-${n}`, so every one is unique.
 */
export class Injector {
  readonly acked = new Set<string>();
  attempted = 0;
  private stopped = false;
  private readonly running: Promise<void>[] = [];
  private prefix = 'x';

  constructor(private readonly o: InjectorOptions) {}

  /** Starts the sessions; IDs carry `prefix` (one per soak round). */
  start(prefix: string): void {
    this.stopped = false;
    this.prefix = prefix;
    const body = `${'x'.repeat(76)}\r\n`.repeat(Math.max(1, Math.ceil(this.o.size / 78)));
    for (let s = 0; s < this.o.sessions; s++) this.running.push(this.loop(s, body));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.running.splice(0));
  }

  private async loop(s: number, body: string): Promise<void> {
    let n = 0;
    while (!this.stopped) {
      const session = await Session.open(this.o.port);
      if (!session) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      try {
        if ((await session.read())?.code !== 220) continue;
        if ((await session.cmd('EHLO crash.bench\r\n'))?.code !== 250) continue;
        while (!this.stopped) {
          const id = `${this.prefix}${s}-${n++}`;
          if ((await session.cmd('MAIL FROM:<soak@crash.bench>\r\n'))?.code !== 250) break;
          if ((await session.cmd(`RCPT TO:<${id}@sink.bench>\r\n`))?.code !== 250) break;
          if ((await session.cmd('DATA\r\n'))?.code !== 354) break;
          this.attempted++;
          const r = await session.cmd(`Message-ID: <${id}@crash.bench>\r\nSubject: soak ${id}\r\n\r\n${body}.\r\n`);
          if (r?.code === 250 && / queued as /.test(r.line)) this.acked.add(id);
          else break;
        }
      } finally {
        session.close();
      }
    }
  }
}
