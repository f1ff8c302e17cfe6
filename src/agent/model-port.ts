import type { ResponseOutputItem } from '../protocol/responses.js';
import type { ModelRequest } from '../model/client.js';

/** The model as the turn loop needs it; implemented by `model/ModelClient`. */
export interface ModelPort {
  respond(
    request: ModelRequest,
    options: { signal: AbortSignal; onTextDelta?: (delta: string) => void },
  ): Promise<{ output: ResponseOutputItem[]; usage?: { totalTokens: number } }>;
}
