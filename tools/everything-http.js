// Runs @modelcontextprotocol/server-everything's Streamable HTTP transport for tests and
// benchmarks, bound to 127.0.0.1 on a free port (the package listens on every interface of a
// fixed port). The first stdout line is the MCP endpoint URL; every HTTP request the server
// receives is logged to stderr as `HTTP <method> <path>`, so tests can count what reached it.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const callback = args.find((arg) => typeof arg === 'function');
  this.on('request', (request) => process.stderr.write(`HTTP ${request.method} ${request.url}\n`));
  return listen.call(this, 0, '127.0.0.1', () => {
    const address = this.address();
    if (address !== null && typeof address === 'object') process.stdout.write(`http://127.0.0.1:${address.port}/mcp\n`);
    callback?.();
  });
};
// The package logs to stdout; stdout carries only the URL.
console.log = (...parts) => process.stderr.write(`${parts.join(' ')}\n`);

await import('@modelcontextprotocol/server-everything/dist/transports/streamableHttp.js');
