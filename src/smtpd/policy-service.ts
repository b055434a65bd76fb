/**
 * check_policy_service: a client for Postfix's policy delegation protocol (SMTPD_POLICY_README).
 *
 * The request is "name=value" lines and an empty line; the reply is "action=…" (plus optional
 * other attributes) and an empty line. The action is an access(5) result and is interpreted
 * exactly like a table result. When the server cannot be reached or does not answer within
 * smtpd_policy_service_timeout, after smtpd_policy_service_try_limit tries
 * smtpd_policy_service_retry_delay apart, the result is smtpd_policy_service_default_action
 * ("451 4.3.5 Server configuration problem").
 *
 * Endpoints: inet:host:port (loopback or any host), unix:/path and unix:private/name (under
 * queue_directory). Postactor opens a connection
 * per request (Postfix keeps one open for reuse; the protocol allows both).
 */
import * as net from 'node:net';
import { isAbsolute, resolve } from 'node:path';

import type { PolicyRequest } from './restrictions/types.js';
import { ccertAttributes } from './ccert.js';

export interface PolicyServiceSettings {
  timeoutMs: number;
  tryLimit: number;
  retryDelayMs: number;
  defaultAction: string;
  policyContext: string;
}

export type Endpoint = { host: string; port: number } | { path: string };

/**
 * "inet:127.0.0.1:9998", "127.0.0.1:9998", "unix:/run/policy" → an endpoint, or an error text.
 * A relative UNIX path ("unix:private/policyd-spf", as master.cf spawn services are set up)
 * is under queue_directory, where Postfix's daemons run.
 */
export function parseEndpoint(spec: string, queueDirectory: string): Endpoint | string {
  if (spec.startsWith('unix:')) {
    const p = spec.slice(5);
    if (!p) return `bad policy service "${spec}"`;
    return { path: isAbsolute(p) ? p : resolve(queueDirectory, p) };
  }
  const rest = spec.startsWith('inet:') ? spec.slice(5) : spec;
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(rest);
  if (!m) return `bad policy service "${spec}" (need inet:host:port or unix:/path)`;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return `bad policy service port in "${spec}"`;
  return { host: m[1] ?? m[2]!, port };
}

/** The attributes Postfix sends, for one request. */
export function policyAttributes(r: PolicyRequest, s: Pick<PolicyServiceSettings, 'policyContext'>, instance: string): [string, string][] {
  const state = r.where === 'END-OF-MESSAGE' ? 'END-OF-MESSAGE' : r.where === 'EHLO' ? 'EHLO' : r.where;
  return [
    ['request', 'smtpd_access_policy'],
    ['protocol_state', state],
    ['protocol_name', r.protocol],
    ['helo_name', r.helo],
    ['queue_id', r.queueId ?? ''],
    ['sender', r.sender ?? ''],
    ['recipient', r.recipient ?? ''],
    ['recipient_count', String(r.where === 'RCPT' ? 0 : r.recipientCount)],
    ['client_address', r.clientAddr],
    ['client_name', r.clientName],
    ['reverse_client_name', r.reverseClientName ?? r.clientName],
    ['instance', instance],
    ['sasl_method', r.saslMethod ?? ''],
    ['sasl_username', r.saslUsername ?? ''],
    ['sasl_sender', r.saslSender ?? ''],
    ['size', String(r.size ?? 0)],
    ...ccertAttributes(r.tls?.ccert),
    ['encryption_protocol', r.tls?.protocol ?? ''],
    ['encryption_cipher', r.tls?.cipher ?? ''],
    ['encryption_keysize', String(r.tls?.usebits ?? 0)],
    ['etrn_domain', r.etrnDomain ?? ''],
    ['stress', ''],
    ['policy_context', s.policyContext],
  ];
}

export type PolicyOutcome = { ok: true; action: string } | { ok: false; error: string };

/** One request/reply exchange on a fresh connection, bounded by timeoutMs. */
export function askOnce(endpoint: Endpoint, request: string, timeoutMs: number): Promise<PolicyOutcome> {
  return new Promise((resolve) => {
    const sock = 'path' in endpoint ? net.connect({ path: endpoint.path }) : net.connect({ host: endpoint.host, port: endpoint.port });
    let buf = '';
    let done = false;
    const finish = (o: PolicyOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(request));
    sock.on('error', (e) => finish({ ok: false, error: e.message }));
    sock.on('close', () => finish({ ok: false, error: 'connection closed before the reply' }));
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > 100_000) return finish({ ok: false, error: 'reply too long' });
      const end = buf.search(/\r?\n\r?\n/);
      const start = buf.search(/^\r?\n/);
      if (start === 0) return finish({ ok: false, error: 'empty reply' });
      if (end < 0) return;
      const attrs = new Map<string, string>();
      for (const line of buf.slice(0, end).split(/\r?\n/)) {
        const eq = line.indexOf('=');
        if (eq > 0) attrs.set(line.slice(0, eq), line.slice(eq + 1));
      }
      const action = attrs.get('action');
      finish(action === undefined ? { ok: false, error: 'reply without action attribute' } : { ok: true, action });
    });
  });
}

/** Asks the policy server; on failure retries, then answers the default action. */
export async function askPolicy(endpoint: Endpoint, r: PolicyRequest, s: PolicyServiceSettings, instance: string, warn: (text: string) => void): Promise<string> {
  const request = policyAttributes(r, s, instance).map(([k, v]) => `${k}=${v.replace(/[\r\n]/g, ' ')}\n`).join('') + '\n';
  const where = 'path' in endpoint ? `unix:${endpoint.path}` : `inet:${endpoint.host}:${endpoint.port}`;
  const tries = Math.max(1, s.tryLimit);
  for (let i = 0; i < tries; i++) {
    if (i > 0) await new Promise((res) => setTimeout(res, s.retryDelayMs));
    const o = await askOnce(endpoint, request, s.timeoutMs);
    if (o.ok) return o.action;
    warn(`problem talking to server ${where}: ${o.error}`);
  }
  return s.defaultAction;
}
