/**
 * Size limits of the exec-server wire, in one place: how large one message may be, and what that
 * leaves for a payload carried as base64 (a whole file, a buffered HTTP body). Every other bound
 * on what crosses the wire is derived from these, so a file the server will read always fits in
 * the message that carries it back. Constants and arithmetic only, no I/O.
 */

/**
 * Largest message (one websocket message, or one NDJSON line) either side sends or accepts:
 * 64 MiB, the default maximum message size of the websocket library under the Codex exec-server
 * and client (tungstenite). A larger incoming websocket message closes the connection (the peer
 * gets code 1009); a larger NDJSON line is dropped and fails only the request it belongs to.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/**
 * Largest websocket frame we send; a longer message goes out as continuation frames. The Codex
 * exec-server refuses a frame over 16 MiB by dropping the connection (tungstenite's default
 * maximum frame size; checked against 0.169.0: a 16.1 MiB `fs/writeFile` frame closed it with
 * 1006), even when the message itself is within the 64 MiB message limit.
 */
export const MAX_WEBSOCKET_FRAME_BYTES = 4 * 1024 * 1024;

/**
 * Room kept in a message for everything around its one large base64 field: the envelope, id,
 * method, a path (at most 4096 bytes, up to three times that percent-encoded), a sandbox
 * description. A message whose rest is larger still is refused whole by the connection.
 */
export const MESSAGE_ENVELOPE_RESERVE_BYTES = 64 * 1024;

/** Length of the padded base64 text of `bytes` bytes: 4 characters for every 3 bytes begun. */
export function base64Length(bytes: number): number {
  return Math.ceil(bytes / 3) * 4;
}

/**
 * The largest payload whose base64 text, with {@link MESSAGE_ENVELOPE_RESERVE_BYTES} of
 * envelope, fits in a message of `maxMessageBytes`: three quarters of what is left, rounded down
 * to whole base64 quanta.
 */
export function maxBase64PayloadBytes(maxMessageBytes: number): number {
  return Math.max(0, Math.floor((maxMessageBytes - MESSAGE_ENVELOPE_RESERVE_BYTES) / 4) * 3);
}

/**
 * Largest file `fs/readFile` returns and `fs/writeFile` sends whole, and largest body a buffered
 * `http/request` returns, with messages of {@link DEFAULT_MAX_MESSAGE_BYTES}: 50,282,496 bytes
 * (about 47.95 MiB). Larger files are read and written in blocks (`fs/open`, `fs/readBlock`,
 * `fs/writeBlock`), larger bodies streamed.
 */
export const DEFAULT_MAX_WHOLE_FILE_BYTES = maxBase64PayloadBytes(DEFAULT_MAX_MESSAGE_BYTES);
