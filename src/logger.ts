/**
 * The one logging shape, pino's: `logger.warn({ layer, error }, 'span verification failed')`. The
 * daemon passes its pino logger; `soci mount`, benchmarks and tests pass their own. Fields are
 * structured data, never pre-formatted into the message.
 */
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(fields: LogFields, msg: string): void;
  info(fields: LogFields, msg: string): void;
  warn(fields: LogFields, msg: string): void;
  error(fields: LogFields, msg: string): void;
}

/** Drops every line. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * A Logger that writes each message as one line of text (fields dropped): the CLI's progress
 * output, whose lines match AWS's `soci` so scripts that parse them keep working.
 */
export function lineLogger(write: (line: string) => void): Logger {
  const at = (_fields: LogFields, msg: string) => write(msg);
  return { debug: at, info: at, warn: at, error: at };
}
