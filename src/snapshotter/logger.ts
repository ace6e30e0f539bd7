/** pino JSON logs on stderr; levels as logrus names (trace, debug, info, warn, error, fatal, panic). */
import pino, { type Logger } from 'pino';
import { SociError } from '../errors.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export function createLogger(level: string): Logger {
  const l = level === 'panic' ? 'fatal' : level === 'warning' ? 'warn' : level;
  if (!LEVELS.includes(l)) throw new SociError('ERR_USAGE', `invalid log level "${level}" (one of ${LEVELS.join(', ')})`);
  // Synchronous destination: logs are never lost when the process exits right after a signal.
  return pino({ level: l, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, pino.destination({ fd: 2, sync: true }));
}

export type { Logger };
