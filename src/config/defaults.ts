// Built-in parameter defaults under Postfix's names, as the parameter registry
// (src/config/params) declares them; the default unit of every time parameter;
// and the per-transport parameter names (<transport>_destination_concurrency_limit
// etc.).

import os from 'node:os';
import { declarations, type TimeUnit } from './params/registry.js';

export type { TimeUnit } from './params/registry.js';

/** Postfix's myhostname default: the system hostname, made fully qualified. */
export function defaultHostname(): string {
  const h = os.hostname() || 'localhost';
  return h.includes('.') ? h : `${h}.localdomain`;
}

/** Postfix's mydomain default: myhostname minus its first label. */
export function domainOf(hostname: string): string {
  const dot = hostname.indexOf('.');
  return dot < 0 || dot === hostname.length - 1 ? 'localdomain' : hostname.slice(dot + 1);
}

const HOST = defaultHostname();

/**
 * Every declared parameter's default (src/config/params: Postfix 3.8's, or Postactor's where
 * the registry says why it differs), unexpanded. Computed defaults (myhostname, mydomain) are
 * computed here; mynetworks stays empty and is derived from mynetworks_style where it is read.
 */
export const DEFAULTS: Readonly<Record<string, string>> = Object.freeze(Object.fromEntries(
  [...declarations()].map((d) => {
    if (d.name === 'myhostname') return [d.name, HOST];
    if (d.name === 'mydomain') return [d.name, domainOf(HOST)]; // config.ts recomputes it from a configured myhostname
    if (d.name === 'process_id') return [d.name, String(process.pid)];
    return [d.name, d.default];
  }),
));

/** Default unit of each time parameter (a bare number is in this unit). */
export const TIME_UNITS: Readonly<Record<string, TimeUnit>> = Object.freeze(Object.fromEntries(
  [...declarations()].filter((d) => d.type === 'time').map((d) => [d.name, d.unit ?? 's']),
));

/**
 * Per-transport parameter suffixes: <transport>_<suffix> falls back to
 * default_<suffix>, except initial_destination_concurrency (no default_ prefix).
 */
export const TRANSPORT_SUFFIXES: readonly string[] = Object.freeze([
  'destination_concurrency_failed_cohort_limit',
  'destination_concurrency_positive_feedback',
  'destination_concurrency_negative_feedback',
  'destination_concurrency_limit',
  'destination_recipient_limit',
  'initial_destination_concurrency',
  'destination_rate_delay',
  'transport_rate_delay',
  'extra_recipient_limit',
  'recipient_refill_limit',
  'recipient_refill_delay',
  'recipient_limit',
  'delivery_slot_cost',
  'delivery_slot_loan',
  'delivery_slot_discount',
  'minimum_delivery_slots',
].sort((a, b) => b.length - a.length)); // longest first: "recipient_limit" must not shadow the others

/** Name of the parameter a per-transport suffix falls back to. */
export function transportDefaultName(suffix: string): string {
  return suffix === 'initial_destination_concurrency' ? suffix : `default_${suffix}`;
}

/**
 * For a name like "smtp_destination_concurrency_limit": the transport and the
 * fallback parameter name; null when the name is not a per-transport name.
 */
export function splitTransportParam(name: string): { transport: string; suffix: string; fallback: string } | null {
  for (const suffix of TRANSPORT_SUFFIXES) {
    if (name.length > suffix.length + 1 && name.endsWith('_' + suffix)) {
      const transport = name.slice(0, name.length - suffix.length - 1);
      if (transport === 'default') return null;
      return { transport, suffix, fallback: transportDefaultName(suffix) };
    }
  }
  return null;
}
