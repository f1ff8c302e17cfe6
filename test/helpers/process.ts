import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, Socket, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { networkEnv } from './network.js';

/** The repository root. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The built CLI (tests run after `npm run build`). */
export const CLI = join(REPO_ROOT, 'dist/cli/main.js');
/** The pinned real Codex binary. */
export const CODEX = join(REPO_ROOT, 'node_modules/.bin/codex');

/** A temporary directory removed by `cleanup()`. */
export async function tempDir(prefix = 'cmx-'): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  // Retried: a server whose client left during its start-up (a detached worker still loading) may
  // create its folders here while they are removed (ENOTEMPTY); it exits on its own moments later.
  return { path, cleanup: () => rm(path, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }) };
}

/** Polls `predicate` until it holds; fails with `what` after `timeoutMs`. For waiting on outside effects only. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A server process whose first stdout line is its URL. */
export interface ListeningProcess {
  url: string;
  child: ChildProcess;
  stderr: () => string;
  stop: () => Promise<void>;
}

/** Starts `program args`, waiting for the first stdout line (the bound URL); by default without the machine's proxy and CA variables. */
export async function startListening(program: string, args: string[], env: NodeJS.ProcessEnv = networkEnv(process.env)): Promise<ListeningProcess> {
  const child = spawn(program, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = await new Promise<string>((resolvePromise, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => resolvePromise(line.trim()));
    child.once('exit', (code) => reject(new Error(`${program} exited with ${code} before printing its URL: ${stderr}`)));
  });
  return {
    url,
    child,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Starts our exec-server on a websocket. */
export function startOurWsExecServer(extraArgs: string[] = [], env: NodeJS.ProcessEnv = networkEnv(process.env)): Promise<ListeningProcess> {
  return startListening(process.execPath, [CLI, 'exec-server', '--listen', 'ws://127.0.0.1:0', ...extraArgs], env);
}

/** Starts the real `codex exec-server` on a websocket with a throwaway CODEX_HOME. */
export function startCodexWsExecServer(codexHome: string, extraArgs: string[] = []): Promise<ListeningProcess> {
  return startListening(CODEX, ['exec-server', '--listen', 'ws://127.0.0.1:0', ...extraArgs], { ...networkEnv(process.env), CODEX_HOME: codexHome });
}

/** A TCP proxy on 127.0.0.1 that can cut its connections and hold new ones. */
export interface TcpProxy {
  port: number;
  /** Destroys every open connection (like a network drop: no close frame). */
  cut(): void;
  /** How many client connections are open now. */
  open(): number;
  /** New connections are refused until `resume()`. */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

/** Starts a TCP proxy to `127.0.0.1:targetPort`. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  let paused = false;
  const server: Server = createServer((client) => {
    if (paused) {
      client.destroy();
      return;
    }
    const upstream = new Socket();
    sockets.add(client);
    sockets.add(upstream);
    clients.add(client);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
      clients.delete(client);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    upstream.connect(targetPort, '127.0.0.1', () => {
      client.pipe(upstream);
      upstream.pipe(client);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    port: address.port,
    cut: () => {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    open: () => clients.size,
    pause: () => {
      paused = true;
    },
    resume: () => {
      paused = false;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** Runs a command to completion (in `cwd`, default this process's) and collects its exit code and output. */
export function runCommand(program: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(program, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

/** True while process `pid` exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
