/**
 * A Server-Sent Events decoder (the `text/event-stream` format of the Responses API's streaming
 * answers, per the WHATWG HTML standard): bytes in, complete events out. Lines end with LF, CRLF
 * or CR; `data:` lines of one event are joined with LF; `event:` names the event; lines starting
 * with `:` are comments; a blank line dispatches the event. An event without data is not
 * dispatched. Work is linear in the input: each byte is decoded and scanned once.
 */

/** One dispatched event. */
export interface SseEvent {
  /** The `event:` field, or null when the event had none. */
  event: string | null;
  /** The `data:` lines, joined with `\n`. */
  data: string;
}

/** Incremental decoder: feed chunks with {@link SseDecoder.push}, then call {@link SseDecoder.end}. */
export class SseDecoder {
  readonly #text = new TextDecoder();
  /** Decoded text not yet split into lines (an incomplete last line). */
  #pending = '';
  #event: string | null = null;
  #data: string[] = [];

  /** Decodes `chunk` and returns the events it completed. */
  push(chunk: Uint8Array): SseEvent[] {
    return this.#lines(this.#pending + this.#text.decode(chunk, { stream: true }), false);
  }

  /**
   * Returns the events completed by the end of the stream. A last line without its line end
   * counts; an event without its closing blank line is incomplete and dropped, as the standard says.
   */
  end(): SseEvent[] {
    return this.#lines(this.#pending + this.#text.decode(), true);
  }

  #lines(text: string, final: boolean): SseEvent[] {
    const events: SseEvent[] = [];
    let start = 0;
    // Searched again only once passed, so text without CRs (the usual case) is scanned once.
    let cr = text.indexOf('\r');
    for (;;) {
      const lf = text.indexOf('\n', start);
      if (cr !== -1 && cr < start) cr = text.indexOf('\r', start);
      let end: number;
      let next: number;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        // A CR at the very end may be the first half of a CRLF split across chunks.
        if (cr === text.length - 1 && !final) break;
        end = cr;
        next = text.charCodeAt(cr + 1) === 10 ? cr + 2 : cr + 1;
      } else if (lf !== -1) {
        end = lf;
        next = lf + 1;
      } else {
        // An unfinished line waits for the next chunk, unless the stream ended.
        if (final) {
          if (start < text.length) this.#line(text.slice(start), events);
          start = text.length;
        }
        break;
      }
      this.#line(text.slice(start, end), events);
      start = next;
    }
    this.#pending = text.slice(start);
    return events;
  }

  #line(line: string, events: SseEvent[]): void {
    if (line === '') {
      if (this.#data.length > 0) events.push(this.#dispatch());
      this.#event = null;
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ':' starts a comment
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#event = value;
  }

  #dispatch(): SseEvent {
    const event: SseEvent = { event: this.#event, data: this.#data.join('\n') };
    this.#event = null;
    this.#data = [];
    return event;
  }
}
