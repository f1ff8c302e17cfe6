// What the npm package and the MCP Registry entry say about this server. server.json is checked
// against the rules of the MCP Registry's server.json schema (2025-12-11) for every field it uses,
// written here as a strict zod schema (a typo in a key is an error, as it would be an ignored
// field in the registry), plus the official registry's own rules: the npm package's `mcpName` is
// the server name, the versions are package.json's, npm packages come from registry.npmjs.org.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { REPO_ROOT } from '../../helpers/process.js';

const SCHEMA_URL = 'https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json';
/** `io.github.<GitHub account>/<name>`: the namespace the registry checks with a GitHub login. */
const GITHUB_NAME = /^io\.github\.[A-Za-z0-9-]+\/codex-multienv-mcp$/;

/** A version, not a range and not `latest` (the schema's words for both `version` fields). */
const ExactVersion = z
  .string()
  .min(1)
  .max(255)
  .refine((version) => version !== 'latest' && !/^[\^~<>=]|(^|\.)[xX*](\.|$)|\s|\|\|/.test(version), 'must be one exact version, not a range or "latest"');

const KeyValueInput = z.strictObject({
  name: z.string().min(1),
  description: z.string().optional(),
  isRequired: z.boolean().optional(),
  isSecret: z.boolean().optional(),
  format: z.enum(['string', 'number', 'boolean', 'filepath']).optional(),
  default: z.string().optional(),
  placeholder: z.string().optional(),
  choices: z.array(z.string()).optional(),
  value: z.string().optional(),
});

const NpmPackage = z.strictObject({
  registryType: z.literal('npm'),
  // The official registry accepts npm packages from this registry only.
  registryBaseUrl: z.literal('https://registry.npmjs.org').optional(),
  identifier: z.string().min(1),
  version: ExactVersion,
  runtimeHint: z.string().optional(),
  transport: z.strictObject({ type: z.literal('stdio') }),
  environmentVariables: z.array(KeyValueInput).optional(),
});

const ServerJson = z.strictObject({
  $schema: z.literal(SCHEMA_URL),
  name: z
    .string()
    .min(3)
    .max(200)
    .regex(/^[a-zA-Z0-9.-]+\/[a-zA-Z0-9._-]+$/),
  title: z.string().min(1).max(100).optional(),
  description: z.string().min(1).max(100),
  version: ExactVersion,
  websiteUrl: z.url().optional(),
  repository: z.strictObject({ url: z.url(), source: z.string(), id: z.string().optional(), subfolder: z.string().optional() }).optional(),
  packages: z.array(NpmPackage).min(1),
});

const PackageJson = z.looseObject({
  name: z.string(),
  mcpName: z.string(),
  version: z.string(),
  bin: z.record(z.string(), z.string()),
  files: z.array(z.string()),
  scripts: z.record(z.string(), z.string()),
  engines: z.object({ node: z.string() }),
  dependencies: z.record(z.string(), z.string()),
  devDependencies: z.record(z.string(), z.string()),
});

const readJson = async (file: string): Promise<unknown> => JSON.parse(await readFile(join(REPO_ROOT, file), 'utf8')) as unknown;

describe('package metadata', () => {
  let server: z.infer<typeof ServerJson>;
  let pkg: z.infer<typeof PackageJson>;
  let rawServer: unknown;

  beforeAll(async () => {
    rawServer = await readJson('server.json');
    const parsed = ServerJson.safeParse(rawServer);
    if (!parsed.success) throw new Error(`server.json breaks the server.json schema: ${z.prettifyError(parsed.error)}`);
    server = parsed.data;
    pkg = PackageJson.parse(await readJson('package.json'));
  });

  it("server.json names the npm package by its mcpName, with package.json's name and version", () => {
    expect(server.name).toMatch(GITHUB_NAME);
    expect(pkg.mcpName).toBe(server.name);
    expect(server.version).toBe(pkg.version);
    expect(server.packages.map((entry) => [entry.identifier, entry.version])).toEqual([[pkg.name, pkg.version]]);
  });

  it('server.json lists the variables the server reads at start: the provider key (secret) and CODEX_HOME', () => {
    const variables = server.packages[0]?.environmentVariables ?? [];
    expect(variables.map((variable) => variable.name)).toEqual(['OPENAI_API_KEY', 'CODEX_HOME']);
    expect(variables[0]?.isSecret).toBe(true);
  });

  it('the checks reject what the registry would', () => {
    const broken = (edit: (value: Record<string, unknown>) => void): boolean => {
      const copy = structuredClone(rawServer) as Record<string, unknown>;
      edit(copy);
      return ServerJson.safeParse(copy).success;
    };
    expect(broken(() => undefined)).toBe(true);
    expect(broken((value) => (value.name = 'io.github.<owner>/codex-multienv-mcp'))).toBe(false);
    expect(broken((value) => (value.description = 'x'.repeat(101)))).toBe(false);
    expect(broken((value) => delete value.version)).toBe(false);
    for (const range of ['^0.1.0', '0.x', '>=0.1.0', 'latest']) expect(broken((value) => (value.packages = [{ ...(value.packages as object[])[0], version: range }]))).toBe(false);
    expect(broken((value) => (value.version = '0.2.0-next.1'))).toBe(true);
    expect(broken((value) => (value.packages = [{ ...(value.packages as object[])[0], registry_type: 'npm' }]))).toBe(false);
    expect(broken((value) => (value.packages = [{ ...(value.packages as object[])[0], transport: { type: 'stdin' } }]))).toBe(false);
  });

  it('package.json: the bin is the built CLI, the tarball carries dist and the native sources, prepack builds, install builds the starter', () => {
    expect(pkg.bin).toEqual({ 'codex-multienv': 'dist/cli/main.js' });
    expect(pkg.files).toEqual(expect.arrayContaining(['dist', 'native', 'binding.gyp']));
    expect(pkg.scripts.prepack).toBe('npm run build');
    expect(pkg.scripts.install).toBe('node native/install.js');
    expect(pkg.engines.node).toBe('>=20');
  });

  it('package.json: dependencies are only what the bundle leaves external; everything bundled is a devDependency', async () => {
    const bundle = await readFile(join(REPO_ROOT, 'tools/bundle.js'), 'utf8');
    const external = /external: \[([^\]]*)\]/.exec(bundle)?.[1];
    if (external === undefined) throw new Error('tools/bundle.js has no `external: [...]` list');
    const externals = [...external.matchAll(/'([^']+)'/g)].map((match) => match[1]);
    expect(externals.length).toBeGreaterThan(0);
    for (const name of Object.keys(pkg.dependencies)) expect({ dependency: name, external: externals.includes(name) }).toEqual({ dependency: name, external: true });
    for (const name of ['@modelcontextprotocol/sdk', 'zod', 'ws']) expect(pkg.devDependencies[name]).toBeDefined();
  });
});
