import type { RequestId } from '../protocol/jsonrpc.js';

/** What the first bytes of a JSON-RPC message say about it. */
export interface MessageHead {
  /** The `id`, when a top-level `id` with an integer or string value was read. */
  id?: RequestId;
  /** The `method`, when a top-level `method` with a string value was read. */
  method?: string;
  /** The top-level member names read, in order (the last one's value may be cut off). */
  keys: string[];
}

/** A string token; JSON.parse then refuses what JSON does not allow in one (raw control characters). */
const STRING = /"(?:[^"\\]|\\.)*"/y;
const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const LITERAL = /true|false|null/y;
const SPACE = /[ \t\r\n]*/y;

/**
 * Reads the top-level members at the start of a message's text (the head of a message too large
 * to parse) up to the first object or array value, the cut, or anything unexpected. Serializers
 * write `id` and `method` before `params` and `result` (serde and `JSON.stringify` keep field
 * order), so the head of an oversized message names whose it is.
 */
export function readMessageHead(text: string): MessageHead {
  const head: MessageHead = { keys: [] };
  let at = skipSpace(text, 0);
  if (text[at] !== '{') return head;
  at = skipSpace(text, at + 1);
  for (;;) {
    const key = token(STRING, text, at);
    if (key === undefined) return head;
    const name = parseString(key);
    if (name === undefined) return head;
    head.keys.push(name);
    at = skipSpace(text, at + key.length);
    if (text[at] !== ':') return head;
    at = skipSpace(text, at + 1);
    const value = token(STRING, text, at) ?? token(NUMBER, text, at) ?? token(LITERAL, text, at);
    // A value that runs to the end of the head may be cut short (a longer number, say).
    if (value === undefined || at + value.length >= text.length) return head;
    if (name === 'id' || name === 'method') {
      const parsed = value.startsWith('"') ? parseString(value) : Number(value);
      if (name === 'method' && typeof parsed === 'string') head.method = parsed;
      if (name === 'id' && (typeof parsed === 'string' || (typeof parsed === 'number' && Number.isSafeInteger(parsed)))) head.id = parsed;
    }
    at = skipSpace(text, at + value.length);
    if (text[at] !== ',') return head;
    at = skipSpace(text, at + 1);
  }
}

function token(pattern: RegExp, text: string, at: number): string | undefined {
  pattern.lastIndex = at;
  return pattern.exec(text)?.[0];
}

function skipSpace(text: string, at: number): number {
  return at + (token(SPACE, text, at)?.length ?? 0);
}

function parseString(literal: string): string | undefined {
  try {
    const value: unknown = JSON.parse(literal);
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}
