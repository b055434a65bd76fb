/**
 * `--help` for every command in bin/: a short manual page each, in the layout of Postfix's
 * (NAME, SYNOPSIS, DESCRIPTION, OPTIONS, ENVIRONMENT, EXIT STATUS, SEE ALSO), printed on
 * standard output with exit status 0. A bad command line still prints the one-line usage on
 * standard error and exits 64 (EX_USAGE); only an explicit --help prints a page.
 */

interface Manual {
  summary: string;
  synopsis: string[];
  description: string;
  options: [string, string][];
  /** Extra sections (title → text), after OPTIONS. */
  sections?: [string, string][];
  exit?: string;
  seeAlso: string[];
}

const CONFIG_OPTION: [string, string] = ['-c config_dir', 'Read main.cf and master.cf in config_dir instead of the located configuration directory.'];

const ENVIRONMENT = `MAIL_CONFIG, POSTACTOR_CONFIG
    The configuration directory when -c is not given, in that order; then /etc/postactor
    when it holds a main.cf; else the embedded default configuration of the project.`;

const MANUALS: Readonly<Record<string, Manual>> = {
  postactor: {
    summary: 'Postactor control program',
    synopsis: ['postactor [-c config_dir] [-v] command', 'command: start-fg | start | stop | abort | reload | status | check | flush'],
    description: `Starts, stops and inspects the Postactor mail system, as postfix(1) does for Postfix.
All daemons run as actors (worker threads) of one master process.`,
    options: [
      CONFIG_OPTION,
      ['-v', 'Accepted for compatibility; no effect.'],
      ['start-fg', 'Run the master in the foreground. With maillog_file empty the log goes to standard output. SIGTERM/SIGINT stop gracefully, SIGQUIT aborts, SIGHUP reloads.'],
      ['start', 'Check the configuration, start the master in the background and wait until it answers. With maillog_file empty the log goes to syslog (syslog_facility, syslog_name), as Postfix logs.'],
      ['stop', 'Stop gracefully: no new mail, deliveries in flight finish and are recorded.'],
      ['abort', 'Stop at once.'],
      ['reload', 'Re-read main.cf and master.cf; a bad configuration is refused and the running one kept.'],
      ['status', 'Report whether the master of this queue directory runs (exit 1 when not).'],
      ['check', 'Check the configuration, the lookup tables it names and the queue, as postfix check does.'],
      ['flush', 'Try to deliver all deferred mail now (postqueue -f).'],
    ],
    sections: [['FILES', `queue_directory/pid/master.pid   the master's pid
queue_directory/public/           the master's control socket
POSTACTOR_SYSLOG_SOCKET           the syslog socket when not /dev/log (environment)`]],
    exit: '0 on success; 1 on failure; 64 on a bad command line.',
    seeAlso: ['postconf(1)', 'postqueue(1)', 'postsuper(1)', 'sendmail(1)'],
  },
  sendmail: {
    summary: 'Postactor to Sendmail compatibility interface',
    synopsis: ['sendmail [option ...] [recipient ...]', 'mailq', 'newaliases'],
    description: `Reads one message from standard input and leaves it in the maildrop directory, where
the server's pickup actor finds it; the server need not be running. As mailq it lists the
queue, as newaliases it rebuilds the alias databases.`,
    options: [
      ['-bm', 'Read mail from standard input and queue it (the default).'],
      ['-bp', 'List the mail queue (mailq).'],
      ['-bi, -I', 'Rebuild the alias databases (newaliases).'],
      ['-bs', 'Speak SMTP on standard input and output (for clients that submit through sendmail -bs).'],
      ['-bv', 'Verify the recipients: a delivery report instead of a delivery.'],
      ['-C config_file', 'main.cf, or its directory, to use instead of the default.'],
      ['-F full_name', 'The sender\'s full name, for a From: header that is added.'],
      ['-f sender, -r sender', 'The envelope sender.'],
      ['-i, -oi', 'A line with a single dot does not end the message.'],
      ['-N dsn', 'DSN NOTIFY: never, or a combination of success, delay, failure.'],
      ['-R hdrs|full', 'DSN RET: return headers only or the full message in a bounce.'],
      ['-V envid', 'DSN ENVID.'],
      ['-t', 'Take the recipients from the To:, Cc: and Bcc: headers (Bcc: is removed).'],
      ['-q', 'Flush the deferred queue (postqueue -f); -qRsite and -qIqueue_id flush some.'],
      ['-v', 'More verbose (twice: a delivery report to the sender).'],
      ['-G, -o7, -o8, -om, -oA..., -X', 'Accepted for compatibility, as Postfix does.'],
    ],
    exit: 'sysexits(3): 0 queued; 64 bad command line; 65 bad message; 69, 71, 73, 75, 77 on failures.',
    seeAlso: ['postactor(1)', 'postqueue(1)', 'mailq(1)', 'newaliases(1)'],
  },
  mailq: {
    summary: 'list the Postactor mail queue',
    synopsis: ['mailq [-c config_dir] [--json]'],
    description: 'Lists every queued message with its size, arrival time, sender and pending recipients with the reason for delay, in the layout of Postfix\'s mailq (postqueue -p).',
    options: [CONFIG_OPTION, ['--json', 'One JSON object per message, as postqueue -j.']],
    exit: '0 on success; 1 on failure; 64 on a bad command line.',
    seeAlso: ['postqueue(1)', 'qshape(1)'],
  },
  postmulti: {
    summary: 'Postactor multi-instance manager',
    synopsis: [
      'postmulti -e init',
      'postmulti -l [-aR] [-g group] [-i name]',
      'postmulti -p [-a] [-g group] [-i name] command...',
      'postmulti -x [-aR] [-g group] [-i name] unix-command...',
      'postmulti -e create | import [-a] [-g group] [-i name] [-G group] [-I name] [param=value ...]',
      'postmulti -e destroy | deport | enable | disable -i name',
      'postmulti -e assign -i name [-I name] [-G group]',
    ],
    description: `Manages several Postactor instances on one host, as Postfix's postmulti(1): the primary
instance (the located configuration directory) and the secondary instances listed in its
multi_instance_directories, each with its own main.cf, master.cf, queue_directory (its own
queue store) and data_directory. Iterator mode runs a command for each selected instance
(-p: postactor start, stop, reload, status …; start-like commands check disabled instances
instead, stop-like ones run in reverse order and skip them); -e changes the set of instances.`,
    options: [
      ['-a', 'All instances (the default); with create/import: put the new one first.'],
      ['-g group', 'Only the members of group; with create/import: before the first of them.'],
      ['-i name', 'Only this instance (its name, the name without "postfix-", its configuration directory, or "-" for the primary).'],
      ['-R', 'Reverse the order.'],
      ['-l', 'List name, group, enabled (y/n) and configuration directory of each instance.'],
      ['-p', 'Run "postactor command" for each instance, with MAIL_CONFIG set to its directory.'],
      ['-x', 'Run a command for each instance with MAIL_CONFIG, config_directory, queue_directory, data_directory, multi_instance_name, multi_instance_group and multi_instance_enable in its environment.'],
      ['-e init', 'Set multi_instance_wrapper and multi_instance_enable = yes in the primary main.cf.'],
      ['-e create', 'Make a new instance (names must start with "postfix-"); its directories default to the primary\'s with the last component replaced by the name; a directory that holds main.cf and master.cf is imported as it is.'],
      ['-e import', 'Add an existing instance.'],
      ['-e destroy', 'Remove a disabled, stopped instance and the files Postactor made for it (an instance with queued mail keeps its store, with a warning).'],
      ['-e deport', 'Remove an instance from the list without touching its files.'],
      ['-e enable, -e disable', 'Set multi_instance_enable in the instance\'s main.cf.'],
      ['-e assign', 'Give an instance a new name (-I) or group (-G); "-" clears.'],
      ['-I name, -G group', 'The name or group to assign.'],
      ['-v', 'Verbose: MAIL_VERBOSE is set for the commands.'],
    ],
    exit: '0 on success; 1 when a command failed for an instance, or on a fatal error; 64 on a bad command line.',
    seeAlso: ['postactor(1)', 'postconf(1)'],
  },
  postqueue: {
    summary: 'Postactor queue control',
    synopsis: ['postqueue [-c config_dir] -p | -j | -f', 'postqueue [-c config_dir] -s site | -i queue_id'],
    description: 'Lists the queue or asks the running master to deliver deferred mail now.',
    options: [
      CONFIG_OPTION,
      ['-p', 'List the queue (as mailq).'],
      ['-j', 'List the queue as JSON, one object per line (Postfix\'s format).'],
      ['-f', 'Flush: every deferred message is due now.'],
      ['-s site', 'Flush the mail for site.'],
      ['-i queue_id', 'Flush one message.'],
      ['--json', 'Machine-readable output.'],
    ],
    exit: '0 on success; 1 on failure (e.g. the mail system is not running for -f); 64 on a bad command line.',
    seeAlso: ['mailq(1)', 'postsuper(1)', 'postactor(1)'],
  },
  postsuper: {
    summary: 'Postactor superintendent',
    synopsis: ['postsuper [-c config_dir] [-psSv] [-d queue_id] [-e queue_id] [-f queue_id] [-h queue_id] [-H queue_id] [-r queue_id] [queue ...]'],
    description: `Deletes, holds, releases, requeues and expires queued messages, and checks the queue's
structure; "-" as queue_id reads IDs from standard input, ALL means every message. While the
server runs, qmgr carries out the requests on messages it holds in memory.`,
    options: [
      CONFIG_OPTION,
      ['-d queue_id', 'Delete the message.'],
      ['-e queue_id', 'Expire the message: it is returned to the sender at its next attempt.'],
      ['-f queue_id', 'Expire and release it from hold.'],
      ['-h queue_id', 'Put the message on hold.'],
      ['-H queue_id', 'Release it from hold.'],
      ['-r queue_id', 'Requeue it (addresses are resolved again).'],
      ['-p', 'Purge temporary files.'],
      ['-s, -S', 'Check and repair the queue structure.'],
      ['-v', 'Verbose.'],
      ['--json', 'Machine-readable output.'],
    ],
    exit: '0 on success; 1 on failure; 64 on a bad command line.',
    seeAlso: ['postqueue(1)', 'postcat(1)'],
  },
  postcat: {
    summary: 'show Postfix queue file contents, or a Postactor queued message',
    synopsis: ['postcat [-bdehorv] [-c config_dir] [-s offset] [files...]', 'postcat [-bdehorv] [-c config_dir] [--json] -q queue_id ...'],
    description: `Prints a Postfix queue file (Postfix's record format) in postcat(1)'s layout, byte for byte as
Postfix 3.7's postcat: the named files, or standard input when none is named (a pipe cannot seek,
so pointer records and the end of the file fail there as in Postfix). With -q the operands are
queue IDs of Postactor's store, each shown as the queue file cleanup would have written.`,
    options: [
      ['-b', 'Show the body.'], CONFIG_OPTION, ['-d', 'Show the decimal record type before each record.'],
      ['-e', 'Show the envelope records.'], ['-h', 'Show the header.'], ['-o', 'Show the queue file offset before each record.'],
      ['-q', 'The operands are queue IDs.'], ['-r', 'Records in file order: do not follow pointer records.'],
      ['-s offset', 'Start at this queue file offset.'], ['-v', 'Name every record; show pointer and padding records.'],
      ['--json', 'With -q: machine-readable output.'],
    ],
    exit: '0 on success; 1 when a file cannot be read or is no queue file, or a message is not found; 64 on a bad command line.',
    seeAlso: ['postqueue(1)', 'postsuper(1)'],
  },
  postconf: {
    summary: 'Postactor configuration utility',
    synopsis: ['postconf [-c config_dir] [-d | -n] [-h] [-x] [-f] [--json] [name ...]', 'postconf --support [name ...]', 'postconf [-c config_dir] -e name=value ...', 'postconf [-c config_dir] -# name ...', 'postconf [-c config_dir] [-f] [-x] [--json] -M [service[/type] ...]'],
    description: `Prints or edits main.cf parameters and master.cf services, with Postfix's parameter set
and defaults; --support tells which parameters Postactor implements, refuses or ignores.`,
    options: [
      CONFIG_OPTION,
      ['-d', 'Default values.'], ['-n', 'Only parameters set in main.cf.'], ['-h', 'Values only, without "name = ".'],
      ['-x', 'Expand $name references.'], ['-f', 'Fold long lines.'], ['-e name=value', 'Edit main.cf.'],
      ['-# name', 'Comment a parameter out.'], ['-M', 'master.cf services.'],
      ['--support', 'Each parameter\'s support in Postactor, as JSON.'], ['--json', 'Machine-readable output.'],
    ],
    exit: '0 on success; 1 on failure; 64 on a bad command line.',
    seeAlso: ['postactor(1)'],
  },
  postmap: {
    summary: 'Postactor lookup table management',
    synopsis: ['postmap [-c config_dir] [-N|-n] [-f] [-i] [-o] [-r] [-s] [-v] [-w] [-q key|-d key] [type:]file ...'],
    description: `Builds file.lmdb from a "key value" text file (types lmdb, hash, btree, cdb, dbm, sdbm all
build file.lmdb), or queries and lists tables of every type Postactor reads: btree, cdb, cidr,
dbm, hash, inline, lmdb, nis, pcre, regexp, sdbm, static, texthash.`,
    options: [
      CONFIG_OPTION,
      ['-q key', 'Print the value of key from the first table that has it (exit 1 if none); "-" reads keys from standard input.'],
      ['-d key', 'Delete key.'], ['-s', 'List all entries.'], ['-i', 'Incremental: add entries from standard input.'],
      ['-f', 'No case folding of keys.'], ['-N, -n', 'Keys and values with / without a terminating NUL.'],
      ['-r', 'A duplicate key replaces the earlier one.'], ['-w', 'No warning about duplicate keys.'], ['-o, -v', 'Accepted; no effect.'],
    ],
    exit: '0 on success; 1 when -q finds nothing or on failure; 64 on a bad command line.',
    seeAlso: ['postalias(1)', 'postconf(1)'],
  },
  postalias: {
    summary: 'Postactor alias database maintenance',
    synopsis: ['postalias [-c config_dir] [-N|-n] [-f] [-i] [-o] [-r] [-s] [-v] [-w] [-q key|-d key] [type:]file ...'],
    description: 'Builds file.lmdb from an aliases(5) file ("name: value, value"), or queries it.',
    options: [
      CONFIG_OPTION,
      ['-q key', 'Print the value of key (exit 1 if not found).'], ['-d key', 'Delete key.'], ['-s', 'List all entries.'],
      ['-i', 'Incremental.'], ['-f', 'No case folding.'], ['-N, -n', 'With / without terminating NUL.'],
      ['-r', 'A duplicate name replaces the earlier one.'], ['-w', 'No duplicate warnings.'], ['-o, -v', 'Accepted; no effect.'],
    ],
    exit: '0 on success; 1 on failure; 64 on a bad command line.',
    seeAlso: ['newaliases(1)', 'postmap(1)'],
  },
  newaliases: {
    summary: 'rebuild the Postactor alias databases',
    synopsis: ['newaliases [-c config_dir] [-v]'],
    description: 'Runs postalias on each table alias_database names (default hash:/etc/aliases, built as /etc/aliases.lmdb).',
    options: [CONFIG_OPTION, ['-v', 'Accepted; no effect.']],
    exit: '0 on success; 1 on failure; 64 on a bad command line.',
    seeAlso: ['postalias(1)', 'sendmail(1)'],
  },
  qshape: {
    summary: 'print Postactor queue domain and age distribution',
    synopsis: ['qshape [-s] [-p] [-m min_subdomains] [-l] [-b bucket_count] [-t bucket_time] [-w terminal_width] [-N batch_msg_count] [-n batch_top_domains] [-c config_dir] [--json] [queue_name ...]'],
    description: 'Counts the recipients (or with -s the senders) of queued mail by domain and age, as Postfix\'s qshape. The default queues are incoming and active.',
    options: [
      ['-s', 'Sender domains instead of recipient domains.'], ['-p', 'Add parent domains (".example.com").'],
      ['-m min_subdomains', 'Parent domains shown with at least this many subdomains (default 5).'],
      ['-l', 'Linear buckets.'], ['-b bucket_count', 'Number of age buckets.'], ['-t bucket_time', 'Bucket width in minutes (default 5).'],
      ['-w width', 'Output width.'], ['-N, -n', 'Accepted for compatibility.'], CONFIG_OPTION, ['--json', 'Machine-readable output.'],
    ],
    exit: '0 on success; 1 on failure; 64 on a bad command line.',
    seeAlso: ['mailq(1)', 'postqueue(1)'],
  },
  postkick: {
    summary: 'kick a Postactor service',
    synopsis: ['postkick [-c config_dir] [-v] class service request'],
    description: 'Sends request to the master.cf service of that name and class through the master\'s control socket, as Postfix\'s postkick writes to a service\'s FIFO: "public pickup W" wakes pickup; "public qmgr" takes I (scan incoming), D (scan deferred), A (ignore backoff: retry deferred mail now), F (flush dead destinations) and W (wake up).',
    options: [CONFIG_OPTION, ['-v', 'Accepted; no effect.']],
    exit: '0 on success; 1 when the service cannot be reached ("perhaps the mail system is down"); 64 on a bad command line.',
    seeAlso: ['postqueue(1)', 'postactor(1)'],
  },
  postlock: {
    summary: 'lock mail folder and execute command',
    synopsis: ['postlock [-c config_dir] [-l lock_style] [-v] file command...'],
    description: 'Locks file as local(8) locks a mailbox (a dot-lock, then flock, per mailbox_delivery_lock or -l), runs command with the lock held, and removes the lock when the command ends.',
    options: [CONFIG_OPTION, ['-l lock_style', 'dotlock, flock or fcntl (served by flock), instead of mailbox_delivery_lock.'], ['-v', 'Accepted; no effect.']],
    exit: 'The command\'s exit status; 1 when it was killed; 75 (EX_TEMPFAIL) when the file cannot be locked and for a bad command line, as Postfix\'s postlock.',
    seeAlso: ['local(8)'],
  },
  postlog: {
    summary: 'Postactor-compatible logging utility',
    synopsis: ['postlog [-iv] [-c config_dir] [-p priority] [-t tag] [text ...]'],
    description: 'Logs text (or each line of standard input) as one maillog record "TAG[pid]: text" in maillog_file (standard output when it is empty). TAG is syslog_name/postlog unless -t replaces it.',
    options: [
      CONFIG_OPTION, ['-i', 'Accepted; the pid is always logged.'],
      ['-p priority', 'info (default), warn, error, fatal or panic.'], ['-t tag', 'The whole tag.'], ['-v', 'Accepted; no effect.'],
    ],
    exit: '0, also for fatal and panic records; 1 on failure; 64 on a bad command line.',
    seeAlso: ['postconf(1)'],
  },
};

/** Wraps text at 78 columns with `indent` spaces before each line. */
function wrap(text: string, indent: number): string {
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(' ')) {
      if (line && indent + line.length + 1 + word.length > 78) {
        out.push(' '.repeat(indent) + line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    out.push(' '.repeat(indent) + line);
  }
  return out.join('\n');
}

/**
 * The manual page of prog after its one-line usage (what a script that greps `--help` for
 * "usage: prog" finds first), or null when there is none.
 */
export function manual(prog: string, usage?: string): string | null {
  const m = MANUALS[prog];
  if (!m) return null;
  const parts = [
    `NAME\n    ${prog} - ${m.summary}`,
    `SYNOPSIS\n${m.synopsis.map((s) => `    ${s}`).join('\n')}`,
    `DESCRIPTION\n${wrap(m.description.replace(/\n/g, ' '), 4)}`,
    `OPTIONS\n${m.options.map(([o, t]) => `    ${o}\n${wrap(t, 8)}`).join('\n')}`,
    ...(m.sections ?? []).map(([title, text]) => `${title}\n${text.split('\n').map((l) => `    ${l}`).join('\n')}`),
    `ENVIRONMENT\n${ENVIRONMENT.split('\n').map((l) => `    ${l}`).join('\n')}`,
    ...(m.exit ? [`EXIT STATUS\n${wrap(m.exit, 4)}`] : []),
    `SEE ALSO\n    ${m.seeAlso.join(', ')}`,
  ];
  return `${usage ? `${usage.trimEnd()}\n\n` : ''}${parts.join('\n\n')}\n`;
}

export const COMMANDS_WITH_MANUALS: readonly string[] = Object.keys(MANUALS);
