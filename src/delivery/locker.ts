/**
 * Kernel locks on an open mailbox for the delivery helper: flock(2) and real fcntl(2) (POSIX
 * record) locks, which Node.js cannot take itself. A small Perl process (perl-base is part of
 * every Debian system) started once per helper, as root, holds them for the helper:
 *
 *   helper → perl   "lock ID KINDS ATTEMPTS DELAY_MS /proc/PID/fd/FD"   KINDS: flock,fcntl
 *   perl → helper   "ok" | "busy TEXT" (another holds it) | "error TEXT"
 *   helper → perl   "unlock [ID …]"   → "ok" (perl closes those descriptors, or all of them:
 *                   the locks go with them)
 *
 * Perl opens the helper's own descriptor through /proc (the same file, never a path lookup
 * through symlinks) and locks its open file description: another process that locks the
 * mailbox with flock() or fcntl() waits, as it would for Postfix's local(8) holding the lock
 * itself. Each kind is tried ATTEMPTS times, DELAY_MS apart, without blocking (Postfix's
 * deliver_lock_attempts and deliver_lock_delay). Perl holds every lock it took until an "unlock"
names it, so a helper writing a batch of mailboxes (batch.ts) sends all its lock lines in one
go and releases them together: two round trips per batch, not two per delivery, and batches
running side by side keep their own locks. A batch asks for one attempt and waits between
attempts itself, so Perl never sleeps while other batches wait for it. Replies come in the
order of the requests.
 *
 * Without /usr/bin/perl, flock is taken by util-linux's flock(1) on our descriptor (a process
 * per delivery) and fcntl is served by flock, as before.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';

const PERL = '/usr/bin/perl';

// struct flock on 64-bit Linux: short l_type, short l_whence, (pad), off_t l_start, off_t l_len, pid_t l_pid, (pad).
const SCRIPT = String.raw`
use strict; use warnings; use Fcntl qw(O_WRONLY F_SETLK F_WRLCK SEEK_SET LOCK_EX LOCK_NB);
use Time::HiRes qw(sleep); use Errno qw(EAGAIN EACCES EWOULDBLOCK EINTR);
$| = 1; my %held;
while (my $l = <STDIN>) {
  chomp $l;
  if ($l =~ /^lock (\d+) (\S+) (\d+) (\d+) (.+)$/) {
    my ($id, $kinds, $n, $delay, $path) = ($1, $2, $3, $4, $5);
    my $fh;
    if (!sysopen($fh, $path, O_WRONLY)) { print "error cannot open $path: $!\n"; next; }
    my ($err, $busy);
    for my $k (split /,/, $kinds) {
      my $ok = 0;
      for my $i (1 .. $n) {
        my $fl = pack('s s x4 q q l x4', F_WRLCK, SEEK_SET, 0, 0, 0);
        $ok = $k eq 'flock' ? flock($fh, LOCK_EX | LOCK_NB) : fcntl($fh, F_SETLK, $fl);
        last if $ok;
        last unless $!{EAGAIN} || $!{EACCES} || $!{EWOULDBLOCK} || $!{EINTR};
        sleep($delay / 1000) if $i < $n;
      }
      if (!$ok) { $busy = $!{EAGAIN} || $!{EACCES} || $!{EWOULDBLOCK} || $!{EINTR}; $err = "$!"; last; }
    }
    if (defined $err) { close $fh; print(($busy ? "busy" : "error") . " $err\n"); } else { $held{$id} = $fh; print "ok\n"; }
  } elsif ($l =~ /^unlock((?: \d+)*)$/) {
    my @ids = $1 eq '' ? keys %held : split(' ', $1);
    for my $id (@ids) { my $fh = delete $held{$id}; close $fh if $fh; }
    print "ok\n";
  }
}
`;

export class Locker {
  private child: ChildProcess | null = null;
  private ids = 0;
  /** Who waits for the next reply lines, in the order the requests were written. */
  private waiting: ((line: string) => void)[] = [];

  static available(): boolean {
    return existsSync(PERL);
  }

  private start(): ChildProcess {
    const child = spawn(PERL, ['-e', SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'], env: { PATH: '/usr/bin:/bin' } });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.waiting.shift()?.(line);
    });
    child.on('exit', () => {
      if (this.child === child) this.child = null;
      for (const w of this.waiting.splice(0)) w('error lock helper exited');
    });
    child.stdin!.on('error', () => { /* reported by 'exit' */ });
    child.unref();
    return child;
  }

  /** The Perl process runs (ensure() has nothing to do). */
  get running(): boolean {
    return this.child !== null;
  }

  /** Starts the Perl process if it is not running: call it as root (it must stay root). */
  ensure(): void {
    this.child ??= this.start();
  }

  private ask(line: string): Promise<string> {
    const child = this.child;
    if (!child) return Promise.resolve('error lock helper not running');
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      child.stdin!.write(line + '\n');
    });
  }

  /**
   * Locks the file open as fd in this process; `id` names the lock for unlock(). On failure the
   * text is errno's message, and `busy` says another process holds the lock.
   */
  async lock(fd: number, kinds: ('flock' | 'fcntl')[], attempts: number, delayMs: number): Promise<{ ok: true; id: number } | { ok: false; busy: boolean; error: string }> {
    const id = ++this.ids;
    const r = await this.ask(`lock ${id} ${kinds.join(',')} ${Math.max(1, attempts)} ${Math.max(0, Math.round(delayMs))} /proc/${process.pid}/fd/${fd}`);
    return r === 'ok' ? { ok: true, id } : { ok: false, busy: r.startsWith('busy '), error: r.replace(/^(error|busy) /, '') };
  }

  /** Ends the Perl process (end of its input): its locks go with it. */
  stop(): void {
    this.child?.stdin!.end();
    this.child = null;
  }

  /** Releases the locks named (all of them without ids). */
  async unlock(ids?: number[]): Promise<void> {
    await this.ask(ids ? ['unlock', ...ids].join(' ') : 'unlock');
  }
}
