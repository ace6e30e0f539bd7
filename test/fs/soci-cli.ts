/** Runs the soci CLI from source (tests in test/fs; `--detach` re-executes this same script). */
import { main } from '../../src/cli/soci.js';

await main(process.argv);
