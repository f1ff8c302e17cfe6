import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { RpcError } from '../rpc/errors.js';
import type { SandboxPolicy } from './sandbox-policy.js';

/** The command to confine. */
export interface ConfinedCommand {
  file: string;
  argv: readonly string[];
  cwd: string;
  /** Terminal processes keep their session so job control works. */
  tty: boolean;
}

function kindOf(path: string): 'dir' | 'file' | undefined {
  try {
    return statSync(path).isDirectory() ? 'dir' : 'file';
  } catch {
    return undefined;
  }
}

/**
 * The bubblewrap arguments that confine `command` to `policy`: the filesystem as the rules say
 * (most general first, so deeper rules override: read is a read-only bind, write a writable one,
 * deny an empty read-only tmpfs or /dev/null), its own /dev and /proc, its own PID namespace, no
 * network unless allowed, no capabilities, no new privileges (bwrap always sets it), and death
 * with its parent.
 *
 * The mounts confine only a process that cannot change them. A caller that is not root gets that
 * from bwrap's user namespace (no capabilities outside it, mounts locked); a root caller gets no
 * user namespace and would keep every capability: its command could remount the read-only binds
 * writable, unmount a `deny` tmpfs or the sandbox's /proc (the host's processes, and through them
 * the host's filesystem, are below it), open raw sockets or make device nodes. `--cap-drop ALL`
 * empties the command's capability sets, and no_new_privs keeps an exec (of a setuid program, or
 * any program run as uid 0) from refilling them.
 */
export function bwrapArgs(policy: SandboxPolicy, command: ConfinedCommand): string[] {
  const args: string[] = [];
  const rules = policy.restrictedFileSystem ? policy.rules : [{ path: '/', access: 'write' as const }];
  const root = rules.find((rule) => rule.path === '/');
  if (root === undefined || root.access === 'deny') args.push('--tmpfs', '/');
  for (const rule of rules) {
    if (rule.path === '/' && rule.access !== 'deny') {
      args.push(rule.access === 'write' ? '--bind' : '--ro-bind', '/', '/');
      continue;
    }
    if (rule.path === '/') continue;
    if (rule.access === 'read') args.push('--ro-bind-try', rule.path, rule.path);
    else if (rule.access === 'write') args.push('--bind-try', rule.path, rule.path);
    else {
      const kind = kindOf(rule.path);
      if (kind === 'dir') args.push('--tmpfs', rule.path, '--remount-ro', rule.path);
      else if (kind === 'file') args.push('--ro-bind', '/dev/null', rule.path);
    }
  }
  args.push('--dev', '/dev', '--proc', '/proc', '--unshare-pid', '--unshare-ipc', '--die-with-parent', '--cap-drop', 'ALL');
  if (!policy.network) args.push('--unshare-net');
  if (!command.tty) args.push('--new-session');
  args.push('--chdir', command.cwd, '--', command.file, ...command.argv.slice(1));
  return args;
}

/** The outcome of probing bubblewrap on this host. */
export type BwrapProbe = { ok: true; path: string } | { ok: false; message: string };

/** `name` found on `searchPath` (absolute), `name` itself when absolute, else undefined. */
function locate(name: string, searchPath: string | undefined): string | undefined {
  if (isAbsolute(name)) return name;
  for (const dir of (searchPath ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    if (dir.length === 0) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

const NOT_INSTALLED =
  'sandboxing needs bubblewrap (`bwrap`), which is not installed on this host; install it (Debian/Ubuntu: `apt-get install bubblewrap`) or run with sandbox `danger-full-access`';

/** The probe runs what a command gets (every flag, capabilities dropped), on a read-only root. */
const PROBE_POLICY: SandboxPolicy = { restrictedFileSystem: true, rules: [{ path: '/', access: 'read' }], network: false };
const PROBE_COMMAND: ConfinedCommand = { file: '/bin/true', argv: ['/bin/true'], cwd: '/', tty: false };

/**
 * Checks once that bubblewrap exists and can confine a command here exactly as {@link bwrapArgs}
 * asks (an old bwrap without `--cap-drop` fails here, not on every command); the answer is cached.
 * The path is resolved against `searchPath` (the server's PATH) once, so a command whose own
 * environment has no PATH still starts. A failure explains what to fix: nothing ever falls back to running unconfined.
 */
export function createBwrapProbe(name = 'bwrap', searchPath?: string): () => Promise<BwrapProbe> {
  let result: Promise<BwrapProbe> | undefined;
  return () => {
    result ??= new Promise<BwrapProbe>((resolve) => {
      const bwrapPath = locate(name, searchPath);
      if (bwrapPath === undefined) {
        resolve({ ok: false, message: NOT_INSTALLED });
        return;
      }
      const child = spawn(bwrapPath, bwrapArgs(PROBE_POLICY, PROBE_COMMAND), { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('error', (error: NodeJS.ErrnoException) =>
        resolve({
          ok: false,
          message: error.code === 'ENOENT' ? NOT_INSTALLED : `bubblewrap could not be started: ${error.message}`,
        }),
      );
      child.once('close', (code) => {
        if (code === 0) resolve({ ok: true, path: bwrapPath });
        else
          resolve({
            ok: false,
            message: `bubblewrap cannot create a sandbox on this host (${stderr.trim() || `exit ${code}`}); enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or run with sandbox \`danger-full-access\``,
          });
      });
    });
    return result;
  };
}

/** Throws the probe's message as a -32603 error when sandboxing is unavailable. */
export async function requireBwrap(probe: () => Promise<BwrapProbe>): Promise<string> {
  const result = await probe();
  if (!result.ok) throw RpcError.internal(result.message);
  return result.path;
}
