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
    /** Called once `bytes` have been encoded (and may be reused). */
    readonly release?: () => void,
  ) {}

  /**
   * The UTF-8 bytes of `prefix + JSON(object) + suffix`, e.g. prefix `{"id":3,"result":` and
   * suffix `}`.
   */
  encode(prefix: string, suffix: string): Buffer {
    const before = JSON.stringify(this.fields);
    const after = JSON.stringify(this.after);
    const head = `${prefix}${before === '{}' ? '{' : `${before.slice(0, -1)},`}${JSON.stringify(this.key)}:"`;
    const tail = `"${after === '{}' ? '}' : `,${after.slice(1)}`}${suffix}`;
    const headBytes = Buffer.byteLength(head, 'utf8');
    const bytes = Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    const out = Buffer.allocUnsafe(headBytes + Math.ceil(bytes.length / 3) * 4 + Buffer.byteLength(tail, 'utf8'));
    let offset = out.write(head, 0, 'utf8');
    // Base64 text is ASCII and needs no JSON escaping, so its latin1 bytes are its UTF-8 bytes.
    for (let start = 0; start < bytes.length; start += ENCODE_SLICE_BYTES) {
      offset += out.write(bytes.toString('base64', start, Math.min(start + ENCODE_SLICE_BYTES, bytes.length)), offset, 'latin1');
    }
    out.write(tail, offset, 'utf8');
    this.release?.();
    return out;
  }
}

/**
 * Bytes encoded per slice: a multiple of 3 (so slices concatenate into one valid base64 text)
 * whose 64 KiB of text is a young-generation string, cheap to collect.
 */
const ENCODE_SLICE_BYTES = 3 * 16 * 1024;

/**
 * `fields`, then `key`: the standard padded base64 of `bytes` (encoded while serializing), then
 * `after`. `release`, when given, is called once the bytes are encoded: a scratch buffer can then
 * go back to its pool.
 */
export function withBase64Bytes<F extends object, K extends string, A extends object = Record<never, never>>(
  fields: F,
  key: K,
  bytes: Uint8Array,
  after?: A,
  release?: () => void,
): WithBase64Field<F & Record<K, string> & A> {
  return new WithBase64Field(fields, key, bytes, after, release);
}
