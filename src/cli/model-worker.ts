/**
 * The model worker thread's entry (bundled as `dist/cli/model-worker.cjs`): reads the network
 * settings from the environment the server handed over, as the server reads its own, and serves
 * the model requests the main thread posts (see `model/worker-client.ts`).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { z } from 'zod';
import { HttpExchange } from '../model/http-exchange.js';
import { serveModelRequests } from '../model/worker-host.js';
import { networkSettings } from './network.js';

/** What the server hands the worker. */
export const ModelWorkerDataSchema = z.object({ env: z.record(z.string(), z.string()), userAgent: z.string().optional() });

if (parentPort !== null) {
  const { env, userAgent } = ModelWorkerDataSchema.parse(workerData);
  serveModelRequests(parentPort, { http: new HttpExchange({ network: networkSettings(env) }), ...(userAgent === undefined ? {} : { userAgent }) });
}
