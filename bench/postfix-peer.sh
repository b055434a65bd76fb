#!/bin/sh
# bench/postfix-peer.sh — run Debian's Postfix as a throwaway relay-only peer for the relay benchmark.
#
#   bench/postfix-peer.sh start DIR PORT SINKPORT   # writes DIR/etc/{main.cf,master.cf}, starts, waits for 220
#   bench/postfix-peer.sh stop DIR                  # postfix -c DIR/etc stop, then kills leftovers
#   bench/postfix-peer.sh check                     # exit 0 if Postfix is installed, 3 if not
#
# Must run as root (Postfix's master drops to mail_owner itself). Everything the instance writes
# lives under DIR: config in DIR/etc (the "-c" directory), queue in DIR/spool, data_directory in
# DIR/data, log in DIR/maillog. (Keeping the queue outside the config directory avoids
# postfix-script's "not owned by root" warnings.) nothing under /etc/postfix is changed, except that
# a minimal /etc/postfix/main.cf is created when (and only when) none exists: postfix(1) reads the
# DEFAULT main.cf before it honours -c, and refuses a non-default config directory that the default
# main.cf does not list in alternate_config_directories. When a main.cf already exists and does not
# list DIR, we do not edit it; we start the instance with MAIL_CONFIG=DIR instead, which makes DIR
# the default configuration for every Postfix program this script runs.
#
# Listens on 127.0.0.1:PORT only; relays everything to [127.0.0.1]:SINKPORT. See
# /work/shared/postfix-peer.md for why each setting is there.
#
# Environment (optional): POSTFIX_PEER_EXTRA — main.cf lines appended (later lines win);
# POSTFIX_PEER_MASTER_EXTRA — master.cf lines appended (e.g. local, virtual, lmtp for
# bench/delivery); POSTFIX_PEER_PASSWD — a passwd file that this instance sees as /etc/passwd:
# Postfix is started in a private mount namespace (unshare -m) with the file bind-mounted over
# /etc/passwd, so local(8) finds throwaway users without any change to the system's files.
set -eu

POSTFIX=${POSTFIX:-/usr/sbin/postfix}
POSTCONF=${POSTCONF:-/usr/sbin/postconf}

die() { echo "postfix-peer: $*" >&2; exit 1; }

installed() { [ -x "$POSTFIX" ] && [ -x "$POSTCONF" ] && [ -d /usr/lib/postfix/sbin ]; }

# Wait until 127.0.0.1:$1 answers with a 220 greeting (bash's /dev/tcp is not in dash: use a tiny
# node-free probe with timeout + exec on /dev/tcp only when bash exists, else postfix's smtp-source).
wait_220() {
  port=$1; tries=0
  while [ $tries -lt 600 ]; do
    if command -v bash >/dev/null 2>&1; then
      if bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 3 <&3 | grep -q 220 && printf 'QUIT\r\n' >&3" 2>/dev/null; then
        return 0
      fi
    fi
    tries=$((tries + 1)); sleep 0.1
  done
  return 1
}

cmd=${1:-}
case "$cmd" in
check)
  installed || { echo "postfix not installed"; exit 3; }
  exit 0
  ;;
start)
  [ $# -eq 4 ] || die "usage: $0 start DIR PORT SINKPORT"
  DIR=$2; PORT=$3; SINKPORT=$4
  installed || { echo "postfix not installed"; exit 3; }
  [ "$(id -u)" -eq 0 ] || die "must run as root (Postfix's master needs it)"
  case "$DIR" in /*) ;; *) die "DIR must be absolute: $DIR" ;; esac
  getent passwd postfix >/dev/null || die "no 'postfix' user (is the postfix package installed?)"
  getent group postdrop >/dev/null || die "no 'postdrop' group (is the postfix package installed?)"

  CONF=$DIR/etc
  mkdir -p "$DIR" "$CONF" "$DIR/spool" "$DIR/data"
  # Postfix insists that the queue directory and its parents are root-owned and not group/other
  # writable; mktemp dirs are 0700 root, which is fine. data_directory must belong to mail_owner.
  chown root:root "$DIR" "$CONF" "$DIR/spool"
  chmod 755 "$DIR" "$CONF" "$DIR/spool"
  chown postfix:root "$DIR/data"
  chmod 700 "$DIR/data"
  : >"$DIR/maillog"

  cat >"$CONF/main.cf" <<EOF
# Throwaway relay-only Postfix peer written by bench/postfix-peer.sh
compatibility_level = 3.6
queue_directory = $DIR/spool
data_directory = $DIR/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-peer.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [127.0.0.1]:$SINKPORT
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
maillog_file = $DIR/maillog
# maillog_file must lie under one of these prefixes (default /var, /dev/stdout).
maillog_file_prefixes = $DIR, /var, /dev/stdout
EOF
  # Extra main.cf lines for a test's peer (a smarthost that requires AUTH, TLS, ...).
  if [ -n "${POSTFIX_PEER_EXTRA:-}" ]; then printf '%s\n' "$POSTFIX_PEER_EXTRA" >>"$CONF/main.cf"; fi
  # Keep only the last setting of each parameter (with its continuation lines). A parameter set
  # twice makes every Postfix process, postlogd included, log "overriding earlier entry" as it
  # reads main.cf; with the kernel's datagram queue full of those lines (net.unix.max_dgram_qlen
  # is 10 here) postlogd's own warning, sent to its own socket before it switches to writing
  # the file itself, blocked it for good, and with it every process that logs: the peer hung
  # at start and at "postfix stop".
  awk '
    /^[A-Za-z0-9_]+[ \t]*=/ { owner = NR; n = $0; sub(/[ \t]*=.*/, "", n); name[NR] = n; last[n] = NR }
    /^[ \t]/ && owner { own[NR] = owner; line[NR] = $0; next }
    { if ($0 !~ /^[A-Za-z0-9_]+[ \t]*=/) owner = 0; own[NR] = owner; line[NR] = $0 }
    END { for (i = 1; i <= NR; i++) if (own[i] == 0 || last[name[own[i]]] == own[i]) print line[i] }
  ' "$CONF/main.cf" >"$CONF/main.cf.new" && mv "$CONF/main.cf.new" "$CONF/main.cf"

  # Debian's master.cf, trimmed to what a relay needs; chroot column "n" everywhere (nothing
  # populates a chroot here). The postlog line makes maillog_file work without syslog.
  cat >"$CONF/master.cf" <<EOF
127.0.0.1:$PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  if [ -n "${POSTFIX_PEER_MASTER_EXTRA:-}" ]; then printf '%s\n' "$POSTFIX_PEER_MASTER_EXTRA" >>"$CONF/master.cf"; fi
  # Dated 10 s back: Postfix reads a configuration file modified within the last second again
  # every 0.3 s until it has "cooled down" (util/load_file.c), which kept the peer's first start
  # 1.5 s in postfix(1) alone, and each daemon it started soon after paused the same way.
  touch -d "@$(($(date +%s) - 10))" "$CONF/main.cf" "$CONF/master.cf"

  # Make "-c DIR" acceptable to postfix(1). See the header comment.
  USE_ENV=0
  if [ ! -e /etc/postfix/main.cf ]; then
    mkdir -p /etc/postfix
    cat >/etc/postfix/main.cf <<EOF
# Minimal default main.cf written by Postactor's bench/postfix-peer.sh because none existed.
# It lets throwaway Postfix instances under /tmp run with "postfix -c DIR".
compatibility_level = 3.6
alternate_config_directories = /tmp, /var/tmp
EOF
  fi
  case "$DIR" in /tmp/*|/var/tmp/*) ;; *) USE_ENV=1 ;; esac
  if ! "$POSTCONF" -h alternate_config_directories 2>/dev/null | tr ', ' '\n\n' | grep -qx -e "$CONF" -e /tmp -e /var/tmp; then
    USE_ENV=1
  fi

  run_pf() {
    if [ $USE_ENV -eq 1 ]; then MAIL_CONFIG=$CONF "$POSTFIX" "$@"; else "$POSTFIX" -c "$CONF" "$@"; fi
  }
  echo $USE_ENV >"$DIR/.use-env"
  # The queue subdirectories, with the owners and modes of Postfix's postfix-files, made here
  # rather than by post-install (what "postfix check" and a first "postfix start" run): that shell
  # script and the integrity checks around it took 3 of a peer's 3.4 s to start, and the test suite
  # starts some thirty peers. The quick-start file makes "postfix start" skip those checks once
  # (postfix-script removes it), as "postfix stop" leaves it for a restart.
  # postfix-files: these eleven $mail_owner 700, maildrop $mail_owner:$setgid_group 730, public
  # 710, pid root 755.
  OWNED="active bounce corrupt defer deferred flush hold incoming private saved trace"
  (cd "$DIR/spool" && mkdir -p $OWNED maildrop public pid && chown postfix:root $OWNED && chmod 700 $OWNED &&
    chown postfix:postdrop maildrop public && chmod 730 maildrop && chmod 710 public && chmod 755 pid) ||
    die "cannot make the queue directories in $DIR/spool"
  : >"$DIR/spool/quick-start"
  if [ -n "${POSTFIX_PEER_PASSWD:-}" ]; then
    # master and every daemon it forks inherit the namespace and its /etc/passwd.
    run_pf_start() {
      if [ $USE_ENV -eq 1 ]; then set -- env MAIL_CONFIG="$CONF" "$POSTFIX" start; else set -- "$POSTFIX" -c "$CONF" start; fi
      unshare -m --propagation private sh -c 'mount --bind "$0" /etc/passwd && exec "$@"' "$POSTFIX_PEER_PASSWD" "$@"
    }
  else
    run_pf_start() { run_pf start; }
  fi
  run_pf_start >>"$DIR/setup.log" 2>&1 || { cat "$DIR/setup.log" >&2; cat "$DIR/maillog" >&2; die "postfix start failed"; }
  if ! wait_220 "$PORT"; then
    cat "$DIR/setup.log" "$DIR/maillog" >&2
    run_pf stop >/dev/null 2>&1 || true
    die "postfix did not greet on 127.0.0.1:$PORT within 60 s"
  fi
  echo "postfix peer up on 127.0.0.1:$PORT relaying to 127.0.0.1:$SINKPORT (config $CONF)"
  ;;
stop)
  [ $# -eq 2 ] || die "usage: $0 stop DIR"
  DIR=$2
  CONF=$DIR/etc
  [ -f "$CONF/main.cf" ] || exit 0
  # Bounded: a peer whose logging is stuck would keep "postfix stop" (its "master -t") waiting
  # for ever; the leftovers are killed below, which also frees a stuck "master -t".
  if [ "$(cat "$DIR/.use-env" 2>/dev/null || echo 0)" = 1 ]; then
    MAIL_CONFIG=$CONF timeout -s KILL 20 "$POSTFIX" stop >/dev/null 2>&1 || true
  else
    timeout -s KILL 20 "$POSTFIX" -c "$CONF" stop >/dev/null 2>&1 || true
  fi
  # Give the master 0.3 s to exit (postfix stop is asynchronous), then kill it and its leftovers:
  # a master whose postlogd went first spends some 1.7 s logging "terminating on signal 15" to a
  # socket nobody reads, and this instance is thrown away.
  PIDF="$DIR/spool/pid/master.pid"
  pid=$(tr -d ' \n' <"$PIDF" 2>/dev/null || true)
  i=0
  while [ -n "$pid" ] && [ "$(cat /proc/$pid/comm 2>/dev/null)" = master ] && [ $i -lt 3 ]; do
    i=$((i + 1)); sleep 0.1
  done
  # Leftover daemons of this instance carry MAIL_CONFIG=DIR in their environment (master exports it).
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$$" ] && continue
    case "$(cat "$d/comm" 2>/dev/null)" in
      master|smtpd|smtp|qmgr|cleanup|pickup|trivial-rewrite|bounce|anvil|scache|postlogd|proxymap|tlsmgr|showq|error|discard|verify|flush|local|virtual|lmtp)
        if tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qxF "MAIL_CONFIG=$CONF"; then
          kill -9 "$p" 2>/dev/null || true
        fi ;;
    esac
  done
  ;;
*)
  die "usage: $0 {start DIR PORT SINKPORT | stop DIR | check}"
  ;;
esac
