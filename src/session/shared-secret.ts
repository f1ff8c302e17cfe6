import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno } from '../exec/io-errors.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';

/** How many bytes a shared secret has. */
export const SHARED_SECRET_BYTES = 32;

/** What a secret's name may be: it names a file of the threads folder or a row of the database. */
const SECRET_NAME_PATTERN = /^[a-z][a-z0-9-]{0,63}$/;

/** `name` when it can name a secret; throws `INVALID_ARGUMENT` otherwise. */
export function checkSecretName(name: string): string {
  if (!SECRET_NAME_PATTERN.test(name)) throw new LocalError(LocalErrorCode.InvalidArgument, `invalid shared secret name ${JSON.stringify(name)}`);
  return name;
}

/**
 * The secret `name` of the threads folder `dir`: made once (32 random bytes, a file of mode 0600
 * created exclusively, so two processes starting together agree on the one written first) and
 * read by every process sharing the folder.
 */
export async function folderSecret(dir: string, name: string): Promise<Buffer> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `.secret-${checkSecretName(name)}`);
  const fresh = randomBytes(SHARED_SECRET_BYTES);
  try {
    const handle = await open(path, 'wx', 0o600);
    try {
      await handle.writeFile(fresh);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return fresh;
  } catch (error) {
    if (!isErrno(error, 'EEXIST')) throw error;
  }
  // Another process made it; it may still be writing its bytes, so a short read is waited out.
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const bytes = await readFile(path);
    if (bytes.length === SHARED_SECRET_BYTES) return bytes;
    if (bytes.length > SHARED_SECRET_BYTES) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new LocalError(LocalErrorCode.InvalidArgument, `${path} is not a shared secret of ${SHARED_SECRET_BYTES} bytes: remove it to make a new one`);
}
