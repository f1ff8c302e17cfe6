import { isAscii } from 'node:buffer';

/**
 * Below this length Node makes a latin1 string an ordinary V8 string; from it on, an external
 * one, which V8 counts as external memory and answers with full garbage collections
 * (`EXTERN_APEX` in Node's string_bytes.cc).
 */
const EXTERNAL_STRING_BYTES = 0xfbee9;

/**
 * Decodes a message's UTF-8 bytes. ASCII (every JSON message whose strings are ASCII, such as
 * base64 payloads) is decoded as latin1: the same text, at a fraction of the UTF-8 decoder's cost,
 * unless it is long enough to become an external string (the UTF-8 decoder makes an ordinary one).
 */
export function decodeUtf8(bytes: Buffer): string {
  return bytes.length < EXTERNAL_STRING_BYTES && isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8');
}
