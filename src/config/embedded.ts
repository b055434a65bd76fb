// The embedded default configuration, used when no configuration directory
// is given (neither -c DIR nor POSTACTOR_CONFIG). It is deliberately safe:
// state lives under the working directory and all outbound mail goes to a
// local sink, so nothing leaves the machine by accident.

import { fileURLToPath } from 'node:url';

/** The project's root (this file is dist/src/config/embedded.js there): local mailboxes go under var/. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');

export const EMBEDDED_MAIN_CF = `# Postactor embedded default main.cf (used when no -c DIR / POSTACTOR_CONFIG).
# Anything not set here has Postfix's default value (see \`postconf -d\`).

# Postfix 3.8 ships this compatibility level in its main.cf.
compatibility_level = 3.8

# Queue files live under the project's directory (Postfix: /var/spool/postfix).
# A relative queue_directory is resolved against the configuration directory,
# and for this embedded default against the project's root directory.
queue_directory = var/spool

# mydestination stays at Postfix's default: $myhostname, localhost.$mydomain, localhost.
# mynetworks stays empty, so mynetworks_style = host applies: only this host's
# own addresses are trusted (127.0.0.1, but not 127.0.0.2).

# Every message that is not delivered locally goes to a sink on this host,
# so nothing leaves the machine by accident. Clear relayhost (relayhost =)
# to deliver by MX lookup instead.
relayhost = [127.0.0.1]:2626

# No alias database (Postfix: alias_maps = hash:/etc/aliases): the project does not
# own /etc/aliases. Local recipients are then checked against the password file only.
alias_maps =
alias_database =

# Local mailboxes (mbox per user) under the project too (Postfix: /var/mail).
mail_spool_directory = ${ROOT}/var/mail

# maillog_file is left empty: Postactor logs to standard output.
`;

export const EMBEDDED_MASTER_CF = `# Postactor embedded default master.cf. The maxproc column is the number of
# worker threads for the service; each thread serves many sessions or deliveries
# at once. "-" means min(default_process_limit, CPU count); 0 means the CPU count.
#
# service        type  private unpriv chroot wakeup maxproc command + args
# ==========================================================================
127.0.0.1:2525   inet  n       -      n      -      2       smtpd
cleanup          unix  n       -      n      -      0       cleanup
qmgr             unix  n       -      n      300    1       qmgr
smtp             unix  -       -      n      -      2       smtp
relay            unix  -       -      n      -      1       smtp
bounce           unix  -       -      n      -      1       bounce
flush            unix  n       -      n      1000?  0       flush
pickup           unix  n       -      n      60     1       pickup
rewrite          unix  -       -      n      -      1       trivial-rewrite
local            unix  -       n      n      -      -       local
virtual          unix  -       n      n      -      -       virtual
error            unix  -       -      n      -      1       error
retry            unix  -       -      n      -      1       error
discard          unix  -       -      n      -      1       discard
`;
