// The MCP server process itself (the built CLI): how it ends.

import { spawn } from 'node:child_process';
import { networkEnv } from '../helpers/network.js';
import { CLI, tempDir } from '../helpers/process.js';

/** Rejects after `ms` with a message naming `what`, so a hang fails the test instead of the run. */
function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

describe('codex-multienv (MCP server process)', () => {
  it('exits with 2 and says why on a bad argument or config while its stdin stays open, leaving no worker behind', async () => {
    const home = await tempDir('mcp-cli-home-');
    try {
      for (const [args, message] of [
        [['--bogus'], /error: Unknown option '--bogus'/],
        [['-c', 'approval_policy="sometimes"'], /error: -c: approval_policy: expected one of untrusted, on-failure, on-request, never, got "sometimes"/],
      ] as const) {
        const child = spawn(process.execPath, [CLI, ...args], { env: { ...networkEnv(process.env), CODEX_HOME: home.path }, stdio: ['pipe', 'pipe', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.once('close', (code) => resolve({ code, stderr })));
        try {
          const result = await withTimeout(exited, 10_000, `the server to exit after ${args.join(' ')}`);
          expect(result.code).toBe(2);
          expect(result.stderr).toMatch(message);
          // 'close' means every holder of the client's pipes is gone: the worker too.
        } finally {
          child.stdin.destroy();
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }
      }
    } finally {
      await home.cleanup();
    }
  });

  it('exits with code 0 when its client closes stdin before the server is up, behind the relay and in one process', async () => {
    const home = await tempDir('mcp-cli-home-');
    try {
      for (const args of [[], ['--foreground']]) {
        const child = spawn(process.execPath, [CLI, ...args], { env: { ...networkEnv(process.env), CODEX_HOME: home.path, HOME: home.path }, stdio: ['pipe', 'pipe', 'ignore'] });
        child.stdout.resume();
        // 'close': every holder of the client's pipes is gone, the worker too.
        const closed = new Promise<number | null>((resolve) => child.once('close', resolve));
        // At once: the worker reads a pipe that ended before it was started.
        child.stdin.end();
        try {
          expect({ args, code: await withTimeout(closed, 30_000, `the server (${args.join(' ') || 'relay'}) to exit after its stdin closed`) }).toEqual({
            args,
            code: 0,
          });
        } finally {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        }
      }
    } finally {
      await home.cleanup();
    }
  });

  it('exits with code 0 on SIGTERM while its stdin stays open', async () => {
    const home = await tempDir('mcp-cli-home-');
    const child = spawn(process.execPath, [CLI], { env: { ...networkEnv(process.env), CODEX_HOME: home.path }, stdio: ['pipe', 'pipe', 'ignore'] });
    try {
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      const answered = new Promise((resolve) => child.stdout.once('data', resolve));
      child.stdin.write(
        `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } })}\n`,
      );
      await answered;

      child.kill('SIGTERM');

      expect(await withTimeout(exited, 10_000, 'the server to exit after SIGTERM')).toEqual({ code: 0, signal: null });
    } finally {
      child.stdin.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await home.cleanup();
    }
  });
});
