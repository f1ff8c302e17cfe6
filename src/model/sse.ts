/**
 * A Server-Sent Events decoder (the `text/event-stream` format of the Responses API's streaming
 * answers, per the WHATWG HTML standard): bytes in, complete events out. Lines end with LF, CRLF
 * or CR; `data:` lines of one event are joined with LF; `event:` names the event; lines starting
 * with `:` are comments; `id:`, `retry:` and unknown fields are ignored (a model stream is never
 * resumed); a blank line dispatches the event. An event without data is not dispatched.
 *
 * The line parsing is eventsource-parser's: it keeps an unfinished line as a list of pieces and
 * joins them once, when its line end arrives, so the work stays linear in the input even when
 * one event of megabytes comes in many small chunks (rescanning the pending text on every chunk
 * made a 4 MB event cost over half a second of CPU). This module adds bytes to text (UTF-8
 * characters split across chunks) and the end of the stream.
 */
import { createParser, type EventSourceParser } from 'eventsource-parser';

/** One dispatched event. */
export interface SseEvent {
  /** The `event:` field, or null when the event had none. */
  event: string | null;
  /** The `data:` lines, joined with `\n`. */
  data: string;
}

const LF = 10;

/** Incremental decoder: feed chunks with {@link SseDecoder.push}, then call {@link SseDecoder.end}. */
export class SseDecoder {
  readonly #text = new TextDecoder();
  readonly #parser: EventSourceParser;
  /** Events the parser dispatched during the current call. */
  #events: SseEvent[] = [];
  /** Whether the text so far stops inside a line (anything but a final LF leaves one open). */
  #openLine = false;

  constructor() {
    this.#parser = createParser({ onEvent: ({ event, data }) => this.#events.push({ event: event ?? null, data }) });
  }

  /** Decodes `chunk` and returns the events it completed. */
  push(chunk: Uint8Array): SseEvent[] {
    return this.#feed(this.#text.decode(chunk, { stream: true }));
  }

  /**
   * Returns the events completed by the end of the stream. A last line without its line end
   * counts; an event without its closing blank line is incomplete and dropped, as the standard says.
   */
  end(): SseEvent[] {
    this.#write(this.#text.decode());
    // Ending the open line completes it, and a CR the parser held back (it could have been the
    // first half of a CRLF) becomes that line's end. A blank line is never added: it would
    // dispatch an event the stream did not finish.
    if (this.#openLine) this.#write('\n');
    this.#parser.reset();
    return this.#take();
  }

  #feed(text: string): SseEvent[] {
    this.#write(text);
    return this.#take();
  }

  /** Feeds the parser; what it dispatches collects in {@link #events} until {@link #take}. */
  #write(text: string): void {
    if (text.length === 0) return;
    this.#parser.feed(text);
    this.#openLine = text.charCodeAt(text.length - 1) !== LF;
  }

  #take(): SseEvent[] {
    if (this.#events.length === 0) return [];
    const events = this.#events;
    this.#events = [];
    return events;
  }
}
