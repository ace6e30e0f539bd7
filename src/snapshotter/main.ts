import { VERSION } from '../version.js';

export function main(argv: string[]): void {
  if (argv.includes('--version') || argv.includes('-v')) {
    process.stdout.write(`soci-snapshotter-grpc ${VERSION}\n`);
    return;
  }
  process.stderr.write('soci-snapshotter-grpc: not yet implemented\n');
  process.exitCode = 1;
}
