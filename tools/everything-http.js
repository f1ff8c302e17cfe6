// Runs @modelcontextprotocol/server-everything's Streamable HTTP transport for tests and
// benchmarks, bound to 127.0.0.1 on a free port (the package listens on every interface of a
// fixed port). The first stdout line is the MCP endpoint URL; every HTTP request the server
// receives is logged to stderr as `HTTP <method> <path>`, so tests can count what reached it.
import http from 'node:http';
import process from 'node:process';

const createServer = http.createServer;
/** @type {typeof http.createServer} */
const loopbackServer = (...args) => {
  const server = createServer(...args);
  const listen = server.listen.bind(server);
  server.on('request', (request) => process.stderr.write(`HTTP ${request.method ?? '?'} ${request.url ?? '?'}\n`));
  /** @type {(...listenArgs: unknown[]) => http.Server} */
  const loopbackListen = (...listenArgs) => {
    const callback = listenArgs.find((arg) => typeof arg === 'function');
    return listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address !== null && typeof address === 'object') process.stdout.write(`http://127.0.0.1:${address.port}/mcp\n`);
      if (callback !== undefined) Reflect.apply(callback, server, []);
    });
  };
  server.listen = loopbackListen;
  return server;
};
// express's app.listen() calls http.createServer() then listen() on it.
http.createServer = loopbackServer;
// The package logs to stdout; stdout carries only the URL.
globalThis.console.log = (...parts) => process.stderr.write(`${parts.map(String).join(' ')}\n`);

await import('@modelcontextprotocol/server-everything/dist/transports/streamableHttp.js');
