import { base64Length } from '../protocol/limits.js';
import { decodeBase64 } from '../util/base64.js';

/**
 * A result or notification params object with one large base64 field (a file's contents, a
 * process's output), serialized by {@link RpcConnection} straight into the message's bytes.
 * `JSON.stringify` would scan a megabyte of base64 for escapes and the transport would encode
 * the text to UTF-8 again; here the base64 is written once. It is made in slices: Node turns a
 * base64 string of more than about a megabyte into an external string, and V8 answers external
 * memory with full garbage collections. The wire form is the same JSON object, fields in the same
 * order.
 */
export class WithBase64Field<T> {
  /** Type only: the object this message stands for. */
  declare readonly __value?: T;
  #encoded?: () => void;
  #sent?: () => void;

  /** @internal Use {@link withBase64Bytes}. */
  constructor(
    /** The fields before the base64 one. */
    readonly fields: object,
    /** The name of the base64 field. */
    readonly key: string,
    /** The bytes the field carries, base64-encoded while serializing. */
    readonly bytes: Uint8Array,
    /** The fields after the base64 one. */
    readonly after: object = {},
    hooks: Base64FieldHooks = {},
  ) {
    this.#encoded = hooks.encoded;
    this.#sent = hooks.sent;
  }

  /** The byte length {@link encode} would give for `prefix` and `suffix`, without encoding. */
  byteLength(prefix: string, suffix: string): number {
    const { head, tail } = this.#frame(prefix, suffix);
    return Buffer.byteLength(head, 'utf8') + base64Length(this.bytes.byteLength) + Buffer.byteLength(tail, 'utf8');
  }

  /**
   * The UTF-8 bytes of `prefix + JSON(object) + suffix`, e.g. prefix `{"id":3,"result":` and
   * suffix `}`. Runs the `encoded` hook.
   */
  encode(prefix: string, suffix: string): Buffer {
    const { head, tail } = this.#frame(prefix, suffix);
    const headBytes = Buffer.byteLength(head, 'utf8');
    const bytes = Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    const out = Buffer.allocUnsafe(headBytes + base64Length(bytes.length) + Buffer.byteLength(tail, 'utf8'));
    let offset = out.write(head, 0, 'utf8');
    // Base64 text is ASCII and needs no JSON escaping, so its latin1 bytes are its UTF-8 bytes.
    for (let start = 0; start < bytes.length; start += ENCODE_SLICE_BYTES) {
      offset += out.write(bytes.toString('base64', start, Math.min(start + ENCODE_SLICE_BYTES, bytes.length)), offset, 'latin1');
    }
    out.write(tail, offset, 'utf8');
    this.#runEncoded();
    return out;
  }

  /** Runs the `sent` hook (and `encoded`, if the message was never encoded); once only. */
  settle(): void {
    this.#runEncoded();
    const sent = this.#sent;
    this.#sent = undefined;
    sent?.();
  }

  #runEncoded(): void {
    const encoded = this.#encoded;
    this.#encoded = undefined;
    encoded?.();
  }

  /** The text before and after the base64 characters. */
  #frame(prefix: string, suffix: string): { head: string; tail: string } {
    const before = JSON.stringify(this.fields);
    const after = JSON.stringify(this.after);
    return {
      head: `${prefix}${before === '{}' ? '{' : `${before.slice(0, -1)},`}${JSON.stringify(this.key)}:"`,
      tail: `"${after === '{}' ? '}' : `,${after.slice(1)}`}${suffix}`,
    };
  }
}

/** Callbacks of a {@link WithBase64Field} message's life. */
export interface Base64FieldHooks {
  /** Runs once the bytes are encoded into the message: their buffer may be reused. */
  encoded?: () => void;
  /**
   * Runs once the message has left the transport's buffer (its send did not report
   * back-pressure, or the transport drained since), or once it is known it will not be sent
   * (too large, the connection closed). Memory reserved for the message can be given back then.
   */
  sent?: () => void;
}

/**
 * Bytes encoded per slice: a multiple of 3 (so slices concatenate into one valid base64 text)
 * whose 64 KiB of text is a young-generation string, cheap to collect.
 */
const ENCODE_SLICE_BYTES = 3 * 16 * 1024;

/**
 * `fields`, then `key`: the standard padded base64 of `bytes` (encoded while serializing), then
 * `after`. `hooks` say when the bytes are encoded (a scratch buffer can then go back to its pool)
 * and when the message is out (memory reserved for it can be given back).
 */
export function withBase64Bytes<F extends object, K extends string, A extends object = Record<never, never>>(
  fields: F,
  key: K,
  bytes: Uint8Array,
  after?: A,
  hooks?: Base64FieldHooks,
): WithBase64Field<F & Record<K, string> & A> {
  return new WithBase64Field(fields, key, bytes, after, hooks);
}

/**
 * The bytes of a base64 field of params registered with `onRequestWithBytes`: already decoded by
 * the connection, or decoded here; invalid text comes back as is, for the error message.
 */
export function decodeBase64Field(field: string | Buffer): Buffer | string {
  return typeof field === 'string' ? (decodeBase64(field) ?? field) : field;
}
