/**
 * The raw websocket floor of the command-output figure: a bare `ws` server, no protocol, that runs
 * `head -c N /dev/zero` for each number N a client sends and forwards every chunk the pipe gives
 * as one binary message, pausing the pipe while the socket holds more than HIGH_WATER_BYTES.
 * What a websocket exec-server could at best do with the same command. Prints its URL first.
 */
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

/** The same high-water mark as our websocket transport. */
const HIGH_WATER_BYTES = 4 * 1024 * 1024;

const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
server.on('connection', (socket) => {
  socket.on('message', (data: Buffer) => {
    const child = spawn('head', ['-c', data.toString('utf8'), '/dev/zero'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let paused = false;
    const sent = (): void => {
      if (paused && socket.bufferedAmount < HIGH_WATER_BYTES / 2) {
        paused = false;
        child.stdout.resume();
      }
    };
    child.stdout.on('data', (chunk: Buffer) => {
      socket.send(chunk, { binary: true }, sent);
      if (socket.bufferedAmount > HIGH_WATER_BYTES) {
        paused = true;
        child.stdout.pause();
      }
    });
  });
});
server.once('listening', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`ws://127.0.0.1:${port}\n`);
});
process.once('SIGTERM', () => server.close(() => process.exit(0)));
