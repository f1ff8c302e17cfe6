import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

/** A plain HTTP server on 127.0.0.1 answering every request with `handle`: for model API answers the fake model cannot give. */
export interface RawHttpServer {
  /** Its base URL as a model API's: `http://127.0.0.1:PORT/v1`. */
  url: string;
  /** Drops its connections and stops it. */
  close(): Promise<void>;
}

/** Starts a {@link RawHttpServer}; the caller closes it. */
export async function startRawHttpServer(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<RawHttpServer> {
  const server = createServer(handle);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server has no TCP address');
  return {
    url: `http://127.0.0.1:${address.port}/v1`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
