#!/usr/bin/env node
// Import-cycle check (CI): no file imports itself through others, and no two folders of src/ import
// each other (e.g. fs/ <-> soci/), type-only imports included. The graph comes from madge.
import madge from 'madge';

const res = await madge('src', { fileExtensions: ['ts'], tsConfig: 'tsconfig.json', detectiveOptions: { ts: { skipTypeImports: false } } });
const graph = res.obj();
const problems = res.circular().map((c) => `file cycle: ${c.join(' -> ')}`);

const folder = (f) => (f.includes('/') ? f.split('/')[0] : '.');
const edges = new Map(); // folder -> Map(folder -> example)
for (const [from, tos] of Object.entries(graph)) {
  for (const to of tos) {
    const a = folder(from);
    const b = folder(to);
    if (a === b || a === '.' || b === '.') continue; // top-level files (errors.ts, ...) are the shared kernel
    if (!edges.has(a)) edges.set(a, new Map());
    if (!edges.get(a).has(b)) edges.get(a).set(b, `${from} -> ${to}`);
  }
}
// Folder cycles: depth-first search for a back edge.
const state = new Map();
const stack = [];
function visit(n) {
  state.set(n, 'open');
  stack.push(n);
  for (const m of edges.get(n)?.keys() ?? []) {
    if (state.get(m) === 'open') {
      const cyc = [...stack.slice(stack.indexOf(m)), m];
      problems.push(
        `folder cycle: ${cyc.join(' -> ')} (${cyc
          .slice(0, -1)
          .map((x, i) => edges.get(x).get(cyc[i + 1]))
          .join('; ')})`,
      );
    } else if (!state.has(m)) visit(m);
  }
  stack.pop();
  state.set(n, 'done');
}
for (const n of edges.keys()) if (!state.has(n)) visit(n);

if (problems.length) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
console.log(`check-cycles: ${Object.keys(graph).length} files, ${edges.size} folders, no cycles`);
