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

/** Encodes bytes as standard padded base64. */
export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}
