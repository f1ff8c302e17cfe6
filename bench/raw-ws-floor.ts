/**
 * The raw websocket floors of the command-output figure: a bare `ws` server, no protocol. For a
 * number N a client sends, it runs `head -c N /dev/zero` and forwards every chunk the pipe gives
 * as one binary message, pausing the pipe while the socket holds more than HIGH_WATER_BYTES: what
 * a websocket exec-server could at best do with the same command. For `loopback:N` it sends N
 * bytes from memory in 64 KiB messages, no command at all: the websocket alone. Prints its URL
 * first.
 */
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';

/** The same high-water mark as our websocket transport. */
const HIGH_WATER_BYTES = 1024 * 1024;
/** A pipe's read size, the size of the loopback's messages. */
const MESSAGE_BYTES = 64 * 1024;
const zeros = Buffer.alloc(MESSAGE_BYTES);

/** Forwards the output of `head -c bytes /dev/zero`. */
function command(socket: WebSocket, bytes: number): void {
  const child = spawn('head', ['-c', String(bytes), '/dev/zero'], { stdio: ['ignore', 'pipe', 'inherit'] });
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
}

/** Sends `bytes` from memory, pausing at the same marks as {@link command}. */
function loopback(socket: WebSocket, bytes: number): void {
  let left = bytes;
  let paused = false;
  const more = (): void => {
    paused = false;
    while (left > 0) {
      const size = Math.min(MESSAGE_BYTES, left);
      left -= size;
      socket.send(zeros.subarray(0, size), { binary: true }, sent);
      if (socket.bufferedAmount > HIGH_WATER_BYTES) {
        paused = true;
        return;
      }
    }
  };
  const sent = (): void => {
    if (paused && socket.bufferedAmount < HIGH_WATER_BYTES / 2) more();
  };
  more();
}

const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
server.on('connection', (socket) => {
  socket.on('message', (data: RawData) => {
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : '';
    if (text.startsWith('loopback:')) loopback(socket, Number(text.slice('loopback:'.length)));
    else command(socket, Number(text));
  });
});
server.once('listening', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`ws://127.0.0.1:${port}\n`);
});
process.once('SIGTERM', () => server.close(() => process.exit(0)));
