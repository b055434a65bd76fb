/** The flush service's messages (Postfix's flush_clnt protocol), declared once for its clients and the service. */

/**
 * → flush (request/reply): `add` a queue ID to a destination's log (qmgr, for each deferred
 * recipient), `send_site` (ETRN, postqueue -s, sendmail -qR: deliver the destination's deferred
 * mail now), `refresh` (the master.cf wakeup: logs unread for fast_flush_refresh_time are sent,
 * empty ones older than fast_flush_purge_time deleted) and `purge` (refresh every log).
 */
export type FlushRequest =
  | { op: 'add'; site: string; queueId: string }
  | { op: 'send_site'; site: string }
  | { op: 'refresh' }
  | { op: 'purge' };

/**
 * Postfix's FLUSH_STAT_*: done (or accepted, for refresh and purge), failed (the service could
 * not be reached, or a table lookup failed), bad (an invalid request parameter), deny (the
 * destination is not eligible: fast_flush_domains does not list it).
 */
export type FlushStatus = 'ok' | 'fail' | 'bad' | 'deny';

export interface FlushReply {
  status: FlushStatus;
}
