/** metrics_listen's syntax, checked by `postactor check` and start-up before anything listens. */

/**
 * `metrics_listen` as host:port; a bare port (or ":port") listens on loopback only, as the
 * parameter's own default is off and a metrics page is for the local Prometheus unless the
 * operator names an address.
 */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value) ?? /^()()(\d+)$/.exec(value);
  if (!m) throw new Error(`metrics_listen = ${value}: expected [host:]port`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`metrics_listen = ${value}: bad port number`);
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '127.0.0.1' : host, port };
}
