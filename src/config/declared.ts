/**
 * Declared parameters: a service (or a helper several services share) names the main.cf
 * parameters it reads and the type it reads each as, and gets them read once, with the
 * registry's types (src/config/params). The service skeleton (src/runtime/service.ts) reads a
 * definition's `params` this way in each thread; helpers in src/ export their own declarations
 * (src/smtp/tls-policy.ts SMTP_TLS_PARAMS, …) for the services that use them to spread into
 * theirs, and take the values read, so one parameter is read once per thread, by one reader.
 *
 *   readParams(config, spec, service)   the declared values; a name the registry does not know,
 *                                       or a kind its type cannot be read as, names the service
 *
 * Write the names quoted (`{ 'delay_warning_time': 'time' }`), as parameter names are
 * everywhere in the code: test/params.test.ts finds each parameter's readers by its quoted name.
 */
import type { Config } from './config.js';
import { DEFAULTS } from './defaults.js';
import { declaration, type ParamType } from './params/registry.js';

/**
 * How a declared parameter is read: its value's type in the service. raw: the value as written,
 * or the default, without $name expansion (Postfix's raw parameters, forward_path and the like,
 * whose $names are the reader's own: the recipient's, the session's).
 */
export type ParamKind = 'str' | 'raw' | 'int' | 'size' | 'bool' | 'time' | 'list';
export type ParamSpec = Readonly<Record<string, ParamKind>>;
type ParamValue<K extends ParamKind> = K extends 'str' | 'raw' ? string : K extends 'bool' ? boolean : K extends 'list' ? string[] : number;
export type Params<S extends ParamSpec> = { readonly [N in keyof S]: ParamValue<S[N]> };

/** The registry types each kind may read (time: seconds; size: a byte count, no sign; list: a str parameter split as Postfix does). */
const READS: Record<ParamKind, readonly ParamType[]> = {
  str: ['str', 'raw'],
  raw: ['raw'],
  list: ['str', 'raw'],
  int: ['int', 'nint', 'long'],
  size: ['int', 'long'],
  bool: ['bool', 'nbool'],
  time: ['time'],
};

/** The declared parameters, each checked against the registry and read with its type. */
export function readParams<S extends ParamSpec>(config: Config, spec: S, service: string): Params<S> {
  const out: Record<string, unknown> = {};
  for (const [name, kind] of Object.entries(spec)) {
    const d = declaration(name);
    if (!d) throw new Error(`${service}: declares parameter ${name}, which is not a known parameter`);
    if (!READS[kind].includes(d.type)) throw new Error(`${service}: declares parameter ${name} as ${kind}, but it is of type ${d.type}`);
    out[name] = kind === 'str' ? config.get(name)
      : kind === 'raw' ? config.raw(name) ?? DEFAULTS[name] ?? ''
      : kind === 'list' ? config.getList(name)
      : kind === 'bool' ? config.getBool(name)
      : kind === 'time' ? config.getTime(name)
      : kind === 'size' ? config.getSize(name)
      : config.getInt(name);
  }
  return out as Params<S>;
}

/**
 * The values of a spec as a caller holds them: already read (a service passes its declared
 * values), or read here from a configuration (callers that have only that: a test, a service
 * that does not declare them yet).
 */
export function valuesOf<S extends ParamSpec>(from: Config | Params<S>, spec: S, reader: string): Params<S> {
  return typeof (from as Config).get === 'function' ? readParams(from as Config, spec, reader) : from as Params<S>;
}
