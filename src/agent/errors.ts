/**
 * Errors that end a turn rather than becoming a tool result the model reads.
 */

/**
 * The turn must stop now: the user answered an approval with `abort`. Thrown by a tool and
 * caught by the turn loop, which ends the turn without another model request.
 */
export class TurnAbortedError extends Error {
  override readonly name = 'TurnAbortedError';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
