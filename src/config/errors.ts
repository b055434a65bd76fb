// Error type for the configuration module. Messages follow Postfix's
// diagnostics: "file:line: what is wrong", or "file: what is wrong" when no
// line number applies.

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Builds a ConfigError with the "file:line: text" / "file: text" prefix. */
export function configError(file: string, line: number | null | undefined, text: string): ConfigError {
  return new ConfigError(line != null && line > 0 ? `${file}:${line}: ${text}` : `${file}: ${text}`);
}
