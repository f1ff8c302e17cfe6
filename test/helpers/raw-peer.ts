import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { MessageTransport } from '../../src/transport/transport.js';
import { connectWebSocket } from '../../src/transport/websocket.js';
import { networkEnv } from './network.js';

/** A peer that sends raw text and reads raw JSON messages, for protocol-edge tests. */
export interface RawPeer {
  send(text: string): void;
  /** The next message, parsed. */
  next(timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves when the other side closed the connection. */
  closed: Promise<void>;
  close(): Promise<void>;
}

function fromQueue(onClose: Promise<void>, send: (text: string) => void, close: () => Promise<void>): { peer: RawPeer; push: (text: string) => void } {
  const queue: string[] = [];
  const waiters: ((text: string) => void)[] = [];
  const push = (text: string): void => {
    const waiter = waiters.shift();
    if (waiter !== undefined) waiter(text);
    else queue.push(text);
  };
  const peer: RawPeer = {
    send,
    next: (timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const queued = queue.shift();
        if (queued !== undefined) {
          resolve(JSON.parse(queued) as Record<string, unknown>);
          return;
        }
        const timer = setTimeout(() => reject(new Error('no message arrived')), timeoutMs);
        waiters.push((text) => {
          clearTimeout(timer);
          resolve(JSON.parse(text) as Record<string, unknown>);
        });
      }),
    closed: onClose,
    close,
  };
  return { peer, push };
}

/** A raw websocket peer. */
export async function rawWebSocket(url: string, headers?: Record<string, string>): Promise<RawPeer> {
  const transport: MessageTransport = await connectWebSocket(url, { timeoutMs: 5000, headers });
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  const { peer, push } = fromQueue(
    closed,
    (text) => void transport.send(text),
    () => transport.close(),
  );
  transport.onmessage = push;
  transport.onclose = () => resolveClosed();
  transport.start();
  return peer;
}

/** A raw stdio peer: spawns `program args` and speaks lines. */
export function rawStdio(program: string, args: string[], env: NodeJS.ProcessEnv = networkEnv(process.env)): RawPeer & { exitCode: Promise<number | null> } {
  const child = spawn(program, args, { env, stdio: ['pipe', 'pipe', 'inherit'] });
  const exitCode = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const { peer, push } = fromQueue(
    exitCode.then(() => undefined),
    (text) => void child.stdin.write(`${text}\n`),
    async () => {
      child.stdin.end();
      await exitCode;
    },
  );
  createInterface({ input: child.stdout }).on('line', push);
  return { ...peer, exitCode };
}
