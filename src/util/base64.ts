const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** True when `text` is standard, padded base64 (RFC 4648 §4). */
export function isBase64(text: string): boolean {
  return BASE64_RE.test(text);
}

/** Decodes standard padded base64, or returns undefined when the text is not valid base64. */
export function decodeBase64(text: string): Buffer | undefined {
  if (!isBase64(text)) return undefined;
  return Buffer.from(text, 'base64');
}

/** Encodes bytes as standard padded base64. */
export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}
