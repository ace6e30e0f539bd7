import { Command, CommanderError } from 'commander';
import { isSociError } from '../errors.js';
import { VERSION } from '../version.js';

export function buildProgram(): Command {
  const program = new Command('soci');
  program.version(VERSION, '-v, --version').description('Seekable OCI: build, convert, push and inspect SOCI indexes');
  return program;
}

/** Entry point: one-line errors (`soci: …`), exit 1, never a stack trace for a user mistake. */
export async function main(argv: string[]): Promise<void> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    process.stderr.write(`soci: ${errorLine(e)}\n`);
    if (process.env.SOCI_DEBUG_STACK === '1' && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exitCode = 1;
  }
}

export function errorLine(e: unknown): string {
  if (isSociError(e)) return e.message;
  if (e instanceof Error) return e.message.split('\n')[0] ?? 'error';
  return String(e);
}
