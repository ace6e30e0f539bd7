#!/usr/bin/env node
import { main } from '../dist/snapshotter/main.js';
main(process.argv);
