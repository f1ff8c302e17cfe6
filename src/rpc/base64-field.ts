import { base64Length } from '../protocol/limits.js';
import { decodeBase64 } from '../util/base64.js';
import type { ValueMessage } from '../transport/transport.js';

/**
 * A result or notification params object whose bytes fields (a file's contents, a process's
 * output) hold the bytes themselves, as Uint8Arrays, sent by {@link RpcConnection}. On a wire each
 * is standard padded base64 text, written straight into the message's UTF-8 bytes at the
 * transport's framing edge: `JSON.stringify` would scan the base64 for escapes and the transport
 * would encode the text to UTF-8 again. The base64 is made in slices: Node turns a base64 string
 * of more than about a megabyte into an external string, and V8 answers external memory with full
 * garbage collections. An in-process transport hands the object over as it is (see
 * {@link ValueMessage}), bytes and all. The wire form is the JSON of the object, fields in the same
 * order, each bytes field a base64 string.
 */
export class WithBase64Field<T> {
  /** Type only: the object this message stands for. */
  declare readonly __value?: T;
  #encoded?: () => void;
  #sent?: () => void;
  #parts?: Part[];
  #length?: number;

  /** @internal Use {@link withBase64Bytes} or {@link withBytes}. */
  constructor(
    /** The object; Uint8Arrays in it (in plain objects and arrays) are its bytes fields. */
    readonly value: object,
    hooks: Base64FieldHooks = {},
  ) {
    this.#encoded = hooks.encoded;
    this.#sent = hooks.sent;
  }

  /** The byte length {@link encode} would give for `prefix` and `suffix`, without encoding. */
  byteLength(prefix: string, suffix: string): number {
    // Counted without writing the JSON: every message is measured against the limit, also one
    // an in-process transport hands over as a value and never encodes.
    this.#length ??= jsonByteLength(this.value);
    return Buffer.byteLength(prefix, 'utf8') + this.#length + Buffer.byteLength(suffix, 'utf8');
  }

  /**
   * The UTF-8 bytes of `prefix + JSON(object) + suffix`, e.g. prefix `{"id":3,"result":` and
   * suffix `}`. Runs the `encoded` hook.
   */
  encode(prefix: string, suffix: string): Buffer {
    const out = Buffer.allocUnsafe(this.byteLength(prefix, suffix));
    let offset = out.write(prefix, 0, 'utf8');
    for (const part of this.#partsOfValue()) {
      if (typeof part === 'string') {
        offset += out.write(part, offset, 'utf8');
        continue;
      }
      const bytes = Buffer.from(part.buffer, part.byteOffset, part.byteLength);
      // Base64 text is ASCII and needs no JSON escaping, so its latin1 bytes are its UTF-8 bytes.
      for (let start = 0; start < bytes.length; start += ENCODE_SLICE_BYTES) {
        offset += out.write(bytes.toString('base64', start, Math.min(start + ENCODE_SLICE_BYTES, bytes.length)), offset, 'latin1');
      }
    }
    out.write(suffix, offset, 'utf8');
    this.#runEncoded();
    return out;
  }

  /**
   * The message `prefix + JSON(object) + suffix` for a transport: encoded by a wire, handed over
   * as a value in process. The prefix and suffix are JSON text around the object, as for
   * {@link encode}; the value is what they spell, with the object where the JSON has it.
   */
  framed(prefix: string, suffix: string): ValueMessage {
    return new FramedMessage(this, prefix, suffix);
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

  /**
   * The message as a value: the envelope `prefix` and `suffix` spell around the object. The bytes
   * are shared with the receiver, unless the sender reuses their buffer once they are encoded (an
   * `encoded` hook): they are then copied first. Runs the `encoded` hook.
   */
  toValue(prefix: string, suffix: string): object {
    const body = this.#encoded === undefined ? this.value : copyBytes(this.value);
    this.#runEncoded();
    const { members, slot } = envelopeOf(prefix, suffix);
    const message = { ...members };
    message[slot] = body;
    return message;
  }

  /** The object's JSON as parts: text, and the bytes to write as base64 between quotes. */
  #partsOfValue(): Part[] {
    this.#parts ??= jsonParts(this.value);
    return this.#parts;
  }
}

/** {@link WithBase64Field.framed}: a class, not closures, as one is made per message. */
class FramedMessage implements ValueMessage {
  constructor(
    private readonly body: WithBase64Field<unknown>,
    private readonly prefix: string,
    private readonly suffix: string,
  ) {}

  encode(): Buffer {
    return this.body.encode(this.prefix, this.suffix);
  }

  toValue(): object {
    return this.body.toValue(this.prefix, this.suffix);
  }
}

/** Callbacks of a {@link WithBase64Field} message's life. */
export interface Base64FieldHooks {
  /**
   * Runs once the bytes are encoded into the message, or copied for an in-process peer: their
   * buffer may be reused.
   */
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

/** Stands for the body while a message's envelope is parsed: JSON text no envelope contains. */
const BODY_MARK_TEXT = '\u0000body\u0000';
const BODY_MARK = JSON.stringify(BODY_MARK_TEXT);

/** A piece of a JSON text: text as it is, or bytes written as base64 (without the quotes). */
type Part = string | Uint8Array;

/**
 * The JSON text of `value` as parts, the same text `JSON.stringify` makes but with every
 * Uint8Array in a plain object or array written as a base64 string. Adjacent text is joined.
 */
function jsonParts(value: unknown): Part[] {
  const writer = new JsonPartsWriter();
  writer.write(value);
  return writer.finish();
}

/** Builds {@link jsonParts}; methods rather than closures, which a per-message call would remake. */
class JsonPartsWriter {
  readonly #parts: Part[] = [];
  #text = '';

  write(item: unknown): void {
    if (item instanceof Uint8Array) {
      this.#parts.push(`${this.#text}"`, item);
      this.#text = '"';
    } else if (Array.isArray(item)) {
      this.#text += '[';
      for (let index = 0; index < item.length; index++) {
        if (index > 0) this.#text += ',';
        const element: unknown = item[index];
        // As JSON.stringify: what it cannot write becomes null in an array.
        if (isOmitted(element)) this.#text += 'null';
        else this.write(element);
      }
      this.#text += ']';
    } else if (isPlainObject(item)) {
      this.#text += '{';
      let first = true;
      for (const key of Object.keys(item)) {
        const field = item[key];
        if (isOmitted(field)) continue;
        this.#text += `${first ? '' : ','}${JSON.stringify(key)}:`;
        first = false;
        this.write(field);
      }
      this.#text += '}';
    } else {
      this.#text += JSON.stringify(item);
    }
  }

  finish(): Part[] {
    this.#parts.push(this.#text);
    return this.#parts;
  }
}

/** The UTF-8 length of the JSON {@link jsonParts} makes of `value`, counted without making it. */
function jsonByteLength(value: unknown): number {
  if (value instanceof Uint8Array) return base64Length(value.byteLength) + 2;
  if (typeof value === 'string') return stringJsonBytes(value);
  if (typeof value === 'number' && Number.isSafeInteger(value)) return integerDigits(value);
  if (Array.isArray(value)) {
    let bytes = 2 + Math.max(0, value.length - 1);
    for (const element of value as unknown[]) bytes += isOmitted(element) ? 4 : jsonByteLength(element);
    return bytes;
  }
  if (isPlainObject(value)) {
    let bytes = 2;
    let members = 0;
    for (const key of Object.keys(value)) {
      const field = value[key];
      if (isOmitted(field)) continue;
      bytes += stringJsonBytes(key) + 1 + jsonByteLength(field);
      members++;
    }
    return bytes + Math.max(0, members - 1);
  }
  return Buffer.byteLength(JSON.stringify(value), 'utf8');
}

/** The UTF-8 length of a string's JSON; printable ASCII without quotes or backslashes is counted directly. */
function stringJsonBytes(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code > 0x7e || code === 0x22 || code === 0x5c) return Buffer.byteLength(JSON.stringify(text), 'utf8');
  }
  return text.length + 2;
}

/** The length of a safe integer's decimal text. */
function integerDigits(value: number): number {
  let digits = value < 0 ? 2 : 1;
  for (let rest = Math.abs(value); rest >= 10; rest = Math.floor(rest / 10)) digits++;
  return digits;
}

/** What JSON.stringify leaves out of an object. */
function isOmitted(value: unknown): boolean {
  return value === undefined || typeof value === 'function' || typeof value === 'symbol';
}

/** An object JSON.stringify writes member by member (no `toJSON` of its own, such as a Date's). */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return (prototype === Object.prototype || prototype === null) && typeof (value as { toJSON?: unknown }).toJSON !== 'function';
}

/** `value` with every Uint8Array in it (in plain objects and arrays) replaced by a copy. */
function copyBytes(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (Array.isArray(value)) return value.map(copyBytes);
  if (!isPlainObject(value)) return value;
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(value)) copy[key] = copyBytes(value[key]);
  return copy;
}

/** A message envelope with the member its body goes in, parsed from the text around the body. */
interface Envelope {
  prefix: string;
  suffix: string;
  members: Record<string, unknown>;
  slot: string;
}

/**
 * The last envelope parsed: a stream of notifications (a command's output) shares one, so each
 * message costs a copy of it, not a parse. Results, whose envelopes differ by id, replace it.
 */
let lastEnvelope: Envelope | undefined;

/** The envelope `prefix` and `suffix` spell around a message's body. */
function envelopeOf(prefix: string, suffix: string): Envelope {
  if (lastEnvelope?.prefix === prefix && lastEnvelope.suffix === suffix) return lastEnvelope;
  const parsed: unknown = JSON.parse(`${prefix}${BODY_MARK}${suffix}`);
  const members = isPlainObject(parsed) ? parsed : undefined;
  const slot = members === undefined ? undefined : Object.keys(members).find((key) => members[key] === BODY_MARK_TEXT);
  if (members === undefined || slot === undefined) throw new TypeError(`not a message envelope around a body: ${prefix}…${suffix}`);
  lastEnvelope = { prefix, suffix, members, slot };
  return lastEnvelope;
}

/**
 * `fields`, then `key`: the bytes (standard padded base64 on a wire), then `after`. `hooks` say
 * when the bytes are encoded (a scratch buffer can then go back to its pool) and when the message
 * is out (memory reserved for it can be given back).
 */
export function withBase64Bytes<F extends object, K extends string, A extends object = Record<never, never>>(
  fields: F,
  key: K,
  bytes: Uint8Array,
  after?: A,
  hooks?: Base64FieldHooks,
): WithBase64Field<F & Record<K, string> & A> {
  return new WithBase64Field({ ...fields, [key]: bytes, ...after }, hooks);
}

/**
 * `value` sent with every Uint8Array in it (in plain objects and arrays) as a bytes field: standard
 * padded base64 on a wire, the bytes in process. E.g. a `process/read` result with its chunks.
 */
export function withBytes<T extends object>(value: T, hooks?: Base64FieldHooks): WithBase64Field<T> {
  return new WithBase64Field(value, hooks);
}

/**
 * The bytes of a base64 field of params registered with `onRequestWithBytes`: already decoded by
 * the connection, or decoded here; invalid text comes back as is, for the error message.
 */
export function decodeBase64Field(field: string | Buffer): Buffer | string {
  return typeof field === 'string' ? (decodeBase64(field) ?? field) : field;
}
