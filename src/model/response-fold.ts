/**
 * The fold of one Responses event stream into the response it carries: the events `respond`
 * acts on, the output items they deliver, and the failures they report.
 */
import { z } from 'zod';
import { HANDLED_STREAM_EVENT_TYPES, ResponseStreamEventSchema } from '../protocol/responses.js';
import type { ResponseOutputItem, ResponseStreamEvent } from '../protocol/responses.js';
import { errorMessage } from '../util/errors.js';
import { ModelStreamError } from './errors.js';

/** Token usage of a response. */
export interface ModelUsage {
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
}

/** A completed model response. */
export interface ModelResponse {
  /** The response id (`resp_…`). */
  id: string;
  /** The output items, in output order, validated. */
  output: ResponseOutputItem[];
  /** Token usage, when the provider reports it. */
  usage?: ModelUsage;
}

/**
 * What one attempt has seen of its stream: the response id and the finished output items. Each
 * event's data goes to {@link ResponseFold.accept}, which returns the response once
 * `response.completed` arrives and throws a {@link ModelStreamError} for an invalid event or a
 * reported failure. `displayUrl` names the API in messages.
 */
export class ResponseFold {
  #responseId: string | undefined;
  /** Items from `response.output_item.done`, by output index. */
  readonly #items = new Map<number, ResponseOutputItem>();
  #nextIndex = 0;
  readonly #displayUrl: string;
  readonly #onTextDelta: ((delta: string) => void) | undefined;

  constructor(displayUrl: string, onTextDelta: ((delta: string) => void) | undefined) {
    this.#displayUrl = displayUrl;
    this.#onTextDelta = onTextDelta;
  }

  /** The id from `response.created`, once it has arrived. */
  get responseId(): string | undefined {
    return this.#responseId;
  }

  /** Acts on one event's data; returns the response once `response.completed` arrives. */
  accept(data: string): ModelResponse | undefined {
    return this.#handle(this.#parse(data));
  }

  /** One event's data as JSON; an `{error}` object is the stream reporting a failure (as the openai SDK reads it). */
  #parse(data: string): unknown {
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch (error) {
      throw new ModelStreamError(
        {
          reason: 'invalid',
          responseId: this.#responseId,
          message: `model stream from ${this.#displayUrl} sent an event that is not JSON: ${errorMessage(error)}`,
        },
        { cause: error },
      );
    }
    if (typeof event === 'object' && event !== null && 'error' in event && Boolean(event.error)) return failureEvent(event.error);
    return event;
  }

  /** Acts on one event; returns the response once `response.completed` arrives. */
  #handle(raw: unknown): ModelResponse | undefined {
    // Only the tag decides whether the event is read at all: no schema run (and no copy) for it.
    const type = typeof raw === 'object' && raw !== null && 'type' in raw ? raw.type : undefined;
    if (typeof type !== 'string' || !HANDLED_STREAM_EVENT_TYPES.includes(type)) return undefined;
    const parsed = ResponseStreamEventSchema.safeParse(raw);
    if (!parsed.success) {
      throw new ModelStreamError({
        reason: 'invalid',
        message: `model stream from ${this.#displayUrl} sent an invalid ${type} event: ${z.prettifyError(parsed.error)}`,
        responseId: this.#responseId,
      });
    }
    const event: ResponseStreamEvent = parsed.data;
    switch (event.type) {
      case 'response.created':
        this.#responseId = event.response.id;
        return undefined;
      case 'response.output_text.delta':
        this.#onTextDelta?.(event.delta);
        return undefined;
      case 'response.output_item.done': {
        const index = event.output_index ?? this.#nextIndex;
        this.#items.set(index, event.item);
        this.#nextIndex = Math.max(this.#nextIndex, index + 1);
        return undefined;
      }
      case 'response.completed': {
        const final = event.response.output ?? [];
        const streamed = [...this.#items.entries()].sort(([a], [b]) => a - b).map(([, item]) => item);
        const usage = event.response.usage;
        return {
          id: event.response.id,
          output: final.length > 0 ? final : streamed,
          ...(usage == null ? {} : { usage: { inputTokens: usage.input_tokens, outputTokens: usage.output_tokens, totalTokens: usage.total_tokens } }),
        };
      }
      case 'response.failed': {
        const code = event.response.error?.code ?? undefined;
        const message = event.response.error?.message ?? 'no message';
        throw new ModelStreamError({
          reason: 'failed',
          code,
          responseId: event.response.id ?? this.#responseId,
          message: `model response from ${this.#displayUrl} failed${code === undefined ? '' : ` (${code})`}: ${message}`,
        });
      }
      case 'response.incomplete': {
        const why = event.response.incomplete_details?.reason ?? 'unknown reason';
        throw new ModelStreamError({
          reason: 'incomplete',
          responseId: event.response.id ?? this.#responseId,
          message: `model response from ${this.#displayUrl} is incomplete: ${why}`,
        });
      }
      case 'error': {
        const code = event.code ?? undefined;
        throw new ModelStreamError({
          reason: 'error',
          code,
          responseId: this.#responseId,
          message: `model stream from ${this.#displayUrl} reported an error${code === undefined ? '' : ` (${code})`}: ${event.message ?? 'no message'}`,
        });
      }
    }
  }
}

/**
 * An event carrying an `error` (some providers report failures so) as the `error` event it means,
 * worded as the openai SDK's stream words it (which threw an `APIError` for such events).
 */
function failureEvent(error: unknown): { type: 'error'; code: string | undefined; message: string } {
  const fields = typeof error === 'object' && error !== null ? error : {};
  const code = 'code' in fields && typeof fields.code === 'string' ? fields.code : undefined;
  const message: unknown = 'message' in fields ? fields.message : undefined;
  let text: string;
  if (typeof message === 'string' && message.length > 0) text = message;
  else if (message !== undefined && message !== null && message !== '' && message !== false && message !== 0) text = JSON.stringify(message);
  else text = JSON.stringify(error);
  return { type: 'error', code, message: text };
}
