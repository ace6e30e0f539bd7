/** pino JSON logs on stderr; levels as logrus names (trace, debug, info, warn, error, fatal, panic). */
import pino, { type Logger } from 'pino';
import { SociError } from '../errors.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

let destination: ReturnType<typeof pino.destination> | null = null;

export function createLogger(level: string): Logger {
  const l = level === 'panic' ? 'fatal' : level === 'warning' ? 'warn' : level;
  if (!LEVELS.includes(l)) throw new SociError('ERR_USAGE', `invalid log level "${level}" (one of ${LEVELS.join(', ')})`);
  // Asynchronous writes: a slow reader of stderr (journald, a pipe) must not stall the daemon.
  // flushLogs() before exiting so the last lines are not lost.
  destination = pino.destination({ fd: 2, sync: false });
  return pino({ level: l, base: null, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } }, destination);
}

/** Writes out buffered log lines; call right before process.exit(). */
export function flushLogs(): void {
  try {
    destination?.flushSync();
  } catch {
    // EAGAIN or not yet open: nothing more we can do while exiting.
  }
}

export type { Logger };
