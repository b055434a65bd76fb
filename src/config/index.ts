// Public entry point of the configuration module: Postfix-compatible main.cf
// and master.cf parsing, the defaults table, and the loader.

export { ConfigError } from './errors.js';
export { parseMainCf } from './main-cf.js';
export type { MainCfSetting } from './main-cf.js';
export { parseMasterCf, inetEndpoint } from './master-cf.js';
export type { MasterService, ServiceType } from './master-cf.js';
export { DEFAULTS, TIME_UNITS, TRANSPORT_SUFFIXES } from './defaults.js';
export type { TimeUnit } from './defaults.js';
export { parseTime, timeUnitOf, transportParam, queueDirectory } from './config.js';
export type { Config, ConfigJSON, Origin } from './config.js';
export { loadConfig, configFromJSON } from './load.js';
export { EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF } from './embedded.js';
