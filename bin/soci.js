#!/usr/bin/env node
import { main } from '../dist/cli/soci.js';
main(process.argv);
