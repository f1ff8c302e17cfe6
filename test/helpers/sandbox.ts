import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { SandboxContext } from '../../src/protocol/exec.js';

/** One entry of Codex's `FileSystemSandboxContext` on a special root. */
export function specialEntry(kind: string, access: 'read' | 'write' | 'deny', extra: { subpath?: string; skipMissing?: boolean } = {}): Record<string, unknown> {
  return {
    path: { type: 'special', value: extra.subpath === undefined ? { kind } : { kind, subpath: extra.subpath } },
    access,
    ...(extra.skipMissing === true ? { missing_path_behavior: 'skip' } : {}),
  };
}

/**
 * The sandbox request Codex 0.169 sends for `workspace-write` with `root` as the workspace
 * (readable root, writable workspace), plus `extra` entries; network restricted unless enabled.
 */
export function workspaceWriteSandbox(root: string, options: { extra?: Record<string, unknown>[]; network?: 'restricted' | 'enabled' } = {}): SandboxContext {
  const uri = pathToFileURL(root).href;
  return {
    permissions: {
      type: 'managed',
      file_system: { type: 'restricted', entries: [specialEntry('root', 'read'), specialEntry('project_roots', 'write'), ...(options.extra ?? [])] },
      network: options.network ?? 'restricted',
    },
    cwd: uri,
    workspaceRoots: [uri],
  };
}

/**
 * The folders of an escape test, all inside the test's own temp folder `root`: the workspace
 * (writable), `ro/decoy` (readable only) and `secret/key` (denied, so hidden under a tmpfs).
 * Every attack aims at these decoys: if one succeeded, it changed nothing outside `root`.
 */
export interface EscapeLayout {
  root: string;
  workspace: string;
  readOnly: string;
  decoy: string;
  secret: string;
  key: string;
}

/** What the decoy and the hidden key hold. */
export const DECOY_TEXT = 'original decoy\n';
export const SECRET_TEXT = 'hidden-key-3f9c\n';

/** Creates the folders and files of {@link EscapeLayout} under `root`. */
export async function makeEscapeLayout(root: string): Promise<EscapeLayout> {
  const layout: EscapeLayout = {
    root,
    workspace: join(root, 'ws'),
    readOnly: join(root, 'ro'),
    decoy: join(root, 'ro', 'decoy'),
    secret: join(root, 'secret'),
    key: join(root, 'secret', 'key'),
  };
  await mkdir(layout.workspace);
  await mkdir(layout.readOnly);
  await mkdir(layout.secret);
  await writeFile(layout.decoy, DECOY_TEXT);
  await writeFile(layout.key, SECRET_TEXT);
  return layout;
}

/** Workspace-write on the layout's workspace, `ro` read-only (its own bind) and `secret` denied. */
export function escapeSandbox(layout: EscapeLayout): SandboxContext {
  return workspaceWriteSandbox(layout.workspace, {
    extra: [
      { path: { type: 'path', path: pathToFileURL(layout.readOnly).href }, access: 'read' },
      { path: { type: 'path', path: pathToFileURL(layout.secret).href }, access: 'deny' },
    ],
  });
}

/** One thing a command in the sandbox tries in order to get out of it. */
export interface EscapeAttempt {
  name: string;
  /** A `sh -c` script; it prints `marker` only when the attempt worked. */
  script: string;
  marker: string;
  /** What the refusal says (so a missing tool cannot pass for a refusal). */
  refusal: RegExp;
}

/** The mount point holding `path`, as the sandbox sees it (util-linux findmnt). */
const mountOf = (path: string): string => `"$(findmnt -n -o TARGET -T ${path})"`;

/**
 * Remounting the decoy's read-only bind writable and writing it; unmounting the deny tmpfs to read
 * the key. The two attacks a root command with CAP_SYS_ADMIN wins.
 */
export function mountEscapes(layout: EscapeLayout): EscapeAttempt[] {
  return [
    {
      name: 'remount a read-only bind writable',
      script: `mount -o remount,bind,rw ${mountOf(layout.decoy)}; echo escaped > ${layout.decoy} && echo WROTE-DECOY`,
      marker: 'WROTE-DECOY',
      refusal: /must be superuser|permission denied/i,
    },
    { name: 'unmount the tmpfs over a denied path', script: `umount ${layout.secret}; cat ${layout.key}`, marker: SECRET_TEXT.trim(), refusal: /must be superuser|not permitted/i },
  ];
}

/**
 * Every attack a command that kept a root caller's capabilities wins: the mount attacks, new
 * namespaces, a raw socket, a device node, and reading the server's memory (ptrace access,
 * through the host's /proc that lies under the sandbox's own).
 */
export function escapeAttempts(layout: EscapeLayout, serverPid: number): EscapeAttempt[] {
  // perl is part of every Debian/Ubuntu base system; it makes the raw system calls sh cannot.
  const rawSocket = `socket(my $s, 2, 3, 1) or die "raw socket: $!\\n"; print "RAW-SOCKET\\n"`;
  const peek = [
    'my $p = shift;',
    'open(my $m, "<", "/proc/$p/maps") or die "maps of the server: $!\\n";',
    'my ($at) = <$m> =~ /^([0-9a-f]+)/;',
    'open(my $f, "<", "/proc/$p/mem") or die "memory of the server: $!\\n";',
    'sysseek($f, hex $at, 0); sysread($f, my $b, 4) == 4 or die "read: $!\\n";',
    'print "SERVER-MEMORY ", unpack("H*", $b), "\\n"',
  ].join(' ');
  return [
    ...mountEscapes(layout),
    {
      name: 'unshare a mount and a network namespace',
      script: 'unshare --mount --net true && echo UNSHARED',
      marker: 'UNSHARED',
      refusal: /unshare failed: Operation not permitted/,
    },
    { name: 'open a raw socket', script: `perl -e '${rawSocket}'`, marker: 'RAW-SOCKET', refusal: /raw socket: Operation not permitted/ },
    { name: 'make a device node', script: `mknod ${join(layout.workspace, 'disk')} b 7 0 && echo MADE-NODE`, marker: 'MADE-NODE', refusal: /mknod: .*Operation not permitted/ },
    {
      name: 'read the server through ptrace access',
      script: `umount -l /proc; perl -e '${peek}' ${serverPid}`,
      marker: 'SERVER-MEMORY',
      refusal: /(maps|memory) of the server: (No such file or directory|Permission denied)/,
    },
  ];
}
