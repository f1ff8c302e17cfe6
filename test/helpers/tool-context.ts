import { SessionApprovals, type Approver } from '../../src/agent/approvals.js';
import type { ProcessTable, ToolContext, TurnEnvironment } from '../../src/agent/tools/tool.js';
import type { EnvPolicy } from '../../src/protocol/exec.js';

/** A process table for tools that must not start processes (`apply_patch`, fs tools). */
export const noProcesses: ProcessTable = {
  register: () => {
    throw new Error('no processes in this test');
  },
  get: () => undefined,
  remove: () => undefined,
  sessionIds: () => [],
  terminateAll: () => Promise.resolve(),
};

/** Every variable of the executor, none removed. */
export const INHERIT_ALL: EnvPolicy = { inherit: 'all', ignoreDefaultExcludes: true, exclude: [], set: {}, includeOnly: [] };

/**
 * A tool context whose only environment is `environment`: policy `never`, no sandbox, no login
 * shells, progress and plans dropped; `overrides` replace any of it.
 */
export function singleEnvironmentToolContext(environment: TurnEnvironment, overrides: Partial<ToolContext> = {}): ToolContext {
  const approver: Approver = { request: () => Promise.resolve({ decision: 'denied', reason: 'not asked in this test' }) };
  return {
    threadId: 'thread-1',
    callId: 'call-1',
    environments: [environment],
    environment: () => environment,
    approvalPolicy: 'never',
    approver,
    sessionApprovals: new SessionApprovals(),
    processes: noProcesses,
    commandEnvironment: () => ({ envPolicy: INHERIT_ALL, env: {} }),
    sandbox: () => null,
    allowLoginShell: false,
    maxOutputTokens: 10_000,
    progress: () => undefined,
    plan: () => undefined,
    signal: new AbortController().signal,
    ...overrides,
  };
}
