/**
 * Strict standard base64 (RFC 4648 §4, padded). Node's decoder is lenient (it skips invalid
 * characters and accepts the URL-safe alphabet), so validity is checked by length instead of a
 * regular expression: a string is valid when it has no URL-safe characters, its length is a
 * multiple of 4, and it decodes to exactly the length its padding implies. This costs one pass
 * in native code, which matters for megabyte payloads.
 */

/** Decodes standard padded base64, or returns undefined when the text is not valid base64. */
export function decodeBase64(text: string): Buffer | undefined {
  if (text.length % 4 !== 0 || text.includes('-') || text.includes('_')) return undefined;
  const decoded = Buffer.from(text, 'base64');
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  return decoded.length === (text.length / 4) * 3 - padding ? decoded : undefined;
}

/**
 * Characters decoded per slice by {@link decodeBase64Bytes}: a multiple of 4, and small enough
 * that each slice is a young-generation string, cheap to collect.
 */
const DECODE_SLICE_CHARS = 64 * 1024;

/**
 * {@link decodeBase64} for base64 text held as ASCII bytes (a slice of a received message), with
 * the same verdict. It never makes the whole text into one string: Node turns long latin1 text
 * into an external string, and V8 answers external memory with full garbage collections.
 * Each slice but the last must decode to exactly 3 bytes per 4 characters; as with the whole
 * text, anything but the alphabet and final padding shortens the output and fails the check.
 */
export function decodeBase64Bytes(text: Buffer): Buffer | undefined {
  const length = text.length;
  if (length % 4 !== 0 || text.includes(0x2d) || text.includes(0x5f)) return undefined;
  const padding = length === 0 ? 0 : text[length - 1] !== 0x3d ? 0 : text[length - 2] === 0x3d ? 2 : 1;
  const out = Buffer.allocUnsafe((length / 4) * 3);
  let written = 0;
  for (let start = 0; start < length; start += DECODE_SLICE_CHARS) {
    const end = Math.min(start + DECODE_SLICE_CHARS, length);
    const expected = ((end - start) / 4) * 3 - (end === length ? padding : 0);
    if (out.write(text.toString('latin1', start, end), written, 'base64') !== expected) return undefined;
    written += expected;
  }
  return out.subarray(0, written);
}

/** Encodes bytes as standard padded base64. */
export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** The reason `text` is not valid base64, in the words of the Rust `base64` crate Codex uses. */
export function describeInvalidBase64(text: string): string {
  const symbol = /[^A-Za-z0-9+/=]/.exec(text);
  const firstPad = text.indexOf('=');
  const misplacedPad = firstPad >= 0 && /[^=]/.test(text.slice(firstPad)) ? firstPad : -1;
  const offset = symbol === null ? misplacedPad : misplacedPad < 0 ? symbol.index : Math.min(symbol.index, misplacedPad);
  if (offset >= 0) return `Invalid symbol ${text.charCodeAt(offset)}, offset ${offset}.`;
  return 'Invalid padding';
}
