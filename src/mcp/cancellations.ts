import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { LocalError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { HeldForCallsStarting, takeOverCancellation } from './sdk-workarounds.js';
import { clientCancellation, isClientTimeout } from './turn-call.js';

/**
 * The client's cancellation of each open `tools/call`, by request id, in place of the SDK's (which
 * would abort the request and drop its response): here a cancellation aborts the call's
 * {@link signal} with the reason classified once (see `clientCancellation`), and the call is still
 * answered. A call is tracked from the moment it arrives, before its arguments are parsed; a
 * cancellation that arrives ahead of it is held until it starts.
 */
export class CallCancellations {
  readonly #open = new Map<RequestId, AbortController>();
  readonly #early = new HeldForCallsStarting<LocalError>();

  constructor(server: Server, logger: Logger) {
    takeOverCancellation(server, (requestId, text) => {
      const controller = this.#open.get(requestId);
      const reason = clientCancellation(text);
      logger.info('tool call cancelled by the client', { requestId, reason: text, timedOut: isClientTimeout(reason), open: controller !== undefined });
      if (controller !== undefined) controller.abort(reason);
      else this.#early.hold(requestId, reason);
    });
  }

  /** Tracks the call `requestId` from now on; the function returned ends that once it is answered. */
  track(requestId: RequestId): () => void {
    const controller = new AbortController();
    const cancelledAlready = this.#early.take(requestId);
    if (cancelledAlready !== undefined) controller.abort(cancelledAlready);
    this.#open.set(requestId, controller);
    return () => {
      if (this.#open.get(requestId) === controller) this.#open.delete(requestId);
    };
  }

  /** Aborts when the client cancels the call `requestId` (never, for a call not tracked). */
  signal(requestId: RequestId): AbortSignal {
    return this.#open.get(requestId)?.signal ?? new AbortController().signal;
  }
}
