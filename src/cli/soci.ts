import { Command, CommanderError } from 'commander';
import { escapeControls, isSociError } from '../errors.js';
import { versionLine } from '../version.js';
import { DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from '../containerd/defaults.js';
import { convertCommand } from './convert.js';
import { createCommand } from './create.js';
import { indexCommand } from './index-cmd.js';
import { pushCommand } from './push.js';
import { rebuildDbCommand } from './rebuild-db.js';
import { ztocCommand } from './ztoc-cmd.js';
import { mountCommand, umountCommand } from './mount.js';
import { doctorCommand } from './doctor.js';
import { prefetchCommand } from './prefetch-cmd.js';

export function buildProgram(): Command {
  const program = new Command('soci');
  program
    .version(versionLine('soci'), '-v, --version')
    .description('Seekable OCI: build, convert, push and inspect SOCI indexes')
    .option('-a, --address <socket>', "address for containerd's GRPC server (env CONTAINERD_ADDRESS)", process.env.CONTAINERD_ADDRESS || DEFAULT_ADDRESS)
    .option('-n, --namespace <ns>', 'namespace to use with commands (env CONTAINERD_NAMESPACE)', process.env.CONTAINERD_NAMESPACE || DEFAULT_NAMESPACE)
    .option('--timeout <duration>', 'timeout for commands, e.g. 30s or 2m')
    .option('--debug', 'enable debug output (each HTTP request, without secrets)', false)
    .option('--content-store <type>', 'use a specific content store (soci or containerd)', 'containerd')
    .option('--root <dir>', 'path to the root directory for this snapshotter (env SOCI_ROOT)', undefined);
  program.addCommand(createCommand());
  program.addCommand(convertCommand());
  program.addCommand(pushCommand());
  program.addCommand(indexCommand());
  program.addCommand(ztocCommand());
  program.addCommand(prefetchCommand());
  program.addCommand(rebuildDbCommand());
  program.addCommand(mountCommand());
  program.addCommand(umountCommand());
  program.addCommand(doctorCommand());
  program.configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `soci: ${s.slice(7)}` : s) });
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

/**
 * The final `soci: …` line: always one line, control characters from the input escaped.
 */
export function errorLine(e: unknown): string {
  const msg = isSociError(e) || e instanceof Error ? e.message : String(e);
  return escapeControls(msg.trim()) || 'error';
}
