/** Runs the soci CLI from source (for tests; `soci mount --detach` re-executes this same script). */
import { main } from '../src/cli/soci.js';

await main(process.argv);
