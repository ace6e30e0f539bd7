/**
 * Ctrl-C (SIGINT) and SIGTERM during a command: run the registered clean-ups (release a containerd
 * lease, remove a temp file) for at most a few seconds, then exit 130 with one line. Without a
 * clean-up registered the default behaviour stays.
 */
const cleanups = new Set<() => Promise<void> | void>();
let installed = false;

function handler(signal: NodeJS.Signals): void {
  process.stderr.write(`soci: interrupted (${signal}); cleaning up\n`);
  const all = [...cleanups].map((fn) =>
    Promise.resolve()
      .then(fn)
      .catch(() => {}),
  );
  const cap = new Promise((r) => setTimeout(r, 5000).unref());
  void Promise.race([Promise.all(all), cap]).then(() => process.exit(130));
}

/** Registers a clean-up; returns its removal. */
export function onInterrupt(fn: () => Promise<void> | void): () => void {
  cleanups.add(fn);
  if (!installed) {
    installed = true;
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  }
  return () => {
    cleanups.delete(fn);
    if (!cleanups.size && installed) {
      installed = false;
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    }
  };
}
