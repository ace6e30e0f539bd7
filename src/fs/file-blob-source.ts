/** A BlobSource over a local file (tests, benchmarks, layers already on disk). Async reads only. */
import { open, stat } from 'node:fs/promises';
import { SociError } from '../errors.js';
import type { BlobSource } from '../oci/blob-source.js';

export async function fileBlobSource(path: string): Promise<BlobSource> {
  const size = (await stat(path)).size;
  return {
    size,
    async read(start: number, end: number): Promise<Buffer> {
      if (start < 0 || end > size || end < start) throw new SociError('ERR_INTERNAL', `read [${start}, ${end}) beyond ${path} of ${size} bytes`);
      const fh = await open(path, 'r');
      try {
        const buf = Buffer.allocUnsafe(end - start);
        let got = 0;
        while (got < buf.length) {
          const { bytesRead } = await fh.read(buf, got, buf.length - got, start + got);
          if (bytesRead === 0) throw new SociError('ERR_IO', `${path} shrank while reading`);
          got += bytesRead;
        }
        return buf;
      } finally {
        await fh.close();
      }
    },
  };
}
