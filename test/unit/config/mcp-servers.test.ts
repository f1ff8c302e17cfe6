import { resolveConfig } from '../../../src/config/config.js';
import { parseConfigToml } from '../../../src/config/layers.js';
import { DEFAULT_MCP_STARTUP_TIMEOUT_MS, DEFAULT_MCP_TOOL_TIMEOUT_MS, parseMcpServers, type ParsedMcpServers } from '../../../src/config/mcp-servers.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';

const HOME = '/h/.codex';

/** Parses `[mcp_servers]` the way the server does: config.toml through resolveConfig, then this module. */
function parse(toml: string): ParsedMcpServers {
  const { config } = resolveConfig({ layers: [parseConfigToml(toml, `${HOME}/config.toml`)], codexHome: HOME });
  return parseMcpServers(config.mcpServers);
}

function problem(toml: string): string {
  try {
    parse(toml);
  } catch (error) {
    expect(error).toBeInstanceOf(LocalError);
    expect((error as LocalError).code).toBe(LocalErrorCode.InvalidConfig);
    return (error as LocalError).message;
  }
  throw new Error('expected an error');
}

describe('parseMcpServers', () => {
  it('keeps a variable or header named __proto__ as a plain key, and refuses a server so named', () => {
    const { servers } = parse('[mcp_servers.a]\ncommand = "x"\nenv = { __proto__ = "v" }\n[mcp_servers.b]\nurl = "http://127.0.0.1:1/mcp"\nhttp_headers = { __proto__ = "h" }');
    const [stdio, http] = servers.map((server) => server.transport);
    expect(stdio?.type === 'stdio' && Object.getOwnPropertyDescriptor(stdio.env, '__proto__')?.value).toBe('v');
    expect(http?.type === 'streamable_http' && Object.getOwnPropertyDescriptor(http.httpHeaders, '__proto__')?.value).toBe('h');
    expect(problem('[mcp_servers.__proto__]\ncommand = "x"')).toBe('mcp_servers.__proto__: the key `__proto__` is not allowed here; choose another name');
  });

  it('is empty without [mcp_servers]', () => {
    expect(parse('model = "o3"')).toEqual({ servers: [], warnings: [] });
  });

  it('reads a stdio server with every key, and a streamable HTTP server, in table order', () => {
    const { servers, warnings } = parse(`
[mcp_servers.docs]
command = "npx"
args = ["-y", "docs-server"]
env = { LEVEL = "debug" }
env_vars = ["GITHUB_TOKEN"]
cwd = "tools"
enabled = true
required = true
startup_timeout_sec = 2.5
tool_timeout_sec = 30
enabled_tools = ["search", "read"]
disabled_tools = ["read"]
environment_id = "box"

[mcp_servers.web]
url = "https://mcp.example.com/mcp"
bearer_token_env_var = "WEB_TOKEN"
http_headers = { "x-team" = "core" }
env_http_headers = { "x-user" = "WEB_USER" }
startup_timeout_ms = 1500
`);
    expect(warnings).toEqual([]);
    expect(servers).toEqual([
      {
        name: 'docs',
        transport: { type: 'stdio', command: 'npx', args: ['-y', 'docs-server'], env: { LEVEL: 'debug' }, envVars: ['GITHUB_TOKEN'], cwd: 'tools' },
        enabled: true,
        required: true,
        startupTimeoutMs: 2500,
        toolTimeoutMs: 30_000,
        enabledTools: ['search', 'read'],
        disabledTools: ['read'],
        environmentId: 'box',
      },
      {
        name: 'web',
        transport: {
          type: 'streamable_http',
          url: 'https://mcp.example.com/mcp',
          bearerTokenEnvVar: 'WEB_TOKEN',
          httpHeaders: { 'x-team': 'core' },
          envHttpHeaders: { 'x-user': 'WEB_USER' },
        },
        enabled: true,
        required: false,
        startupTimeoutMs: 1500,
        toolTimeoutMs: DEFAULT_MCP_TOOL_TIMEOUT_MS,
        enabledTools: undefined,
        disabledTools: [],
        environmentId: undefined,
      },
    ]);
  });

  it('fills defaults', () => {
    const [server] = parse('[mcp_servers.x]\ncommand = "x"').servers;
    expect(server).toMatchObject({
      enabled: true,
      required: false,
      startupTimeoutMs: DEFAULT_MCP_STARTUP_TIMEOUT_MS,
      toolTimeoutMs: DEFAULT_MCP_TOOL_TIMEOUT_MS,
      disabledTools: [],
    });
    expect(server?.transport).toEqual({ type: 'stdio', command: 'x', args: [], env: {}, envVars: [], cwd: undefined });
  });

  it('warns about unknown keys and keeps going', () => {
    const { servers, warnings } = parse('[mcp_servers.x]\ncommand = "x"\nexperimental_environment = "remote"\n[mcp_servers.x.tools.search]\napproval_mode = "approve"');
    expect(servers).toHaveLength(1);
    expect(warnings).toEqual(['mcp_servers.x.experimental_environment: unknown key ignored', 'mcp_servers.x.tools: unknown key ignored']);
  });

  it('names the server and the key of every bad value', () => {
    expect(problem('[mcp_servers.x]\ncommand = 3')).toBe('mcp_servers.x.command: expected a string, got 3');
    expect(problem('[mcp_servers.x]\ncommand = "x"\nargs = "-y"')).toBe('mcp_servers.x.args: expected an array, got "-y"');
    expect(problem('[mcp_servers.x]\ncommand = "x"\nenv = { A = 1 }')).toBe('mcp_servers.x.env.A: expected a string, got 1');
    expect(problem('[mcp_servers.x]\ncommand = "x"\nstartup_timeout_sec = -1')).toBe('mcp_servers.x.startup_timeout_sec: expected more than 0, got -1');
    expect(problem('[mcp_servers.x]\nurl = "ftp://host/mcp"')).toBe('mcp_servers.x.url: expected an http or https URL, got "ftp://host/mcp"');
    expect(problem('[mcp_servers.x]\ncommand = ""')).toBe('mcp_servers.x.command: must not be empty');
    expect(problem('[mcp_servers.a]\ncommand = 1\n[mcp_servers.b]\nurl = 2')).toBe('mcp_servers.a.command: expected a string, got 1; mcp_servers.b.url: expected a string, got 2');
  });

  it('refuses what Codex refuses: no transport, both transports, keys of the other transport, an inline token, a bad name', () => {
    expect(problem('[mcp_servers.x]\nargs = ["a"]')).toBe('mcp_servers.x: missing `command` (a stdio server) or `url` (a streamable HTTP server)');
    expect(problem('[mcp_servers.x]\ncommand = "x"\nurl = "http://h/mcp"')).toBe('mcp_servers.x: set either `command` (stdio) or `url` (streamable HTTP), not both');
    expect(problem('[mcp_servers.x]\nurl = "http://h/mcp"\nenv = { A = "1" }')).toBe(
      'mcp_servers.x.env: `env` applies only to a stdio server (`command`), not to a streamable HTTP one',
    );
    expect(problem('[mcp_servers.x]\ncommand = "x"\nhttp_headers = { a = "1" }')).toBe(
      'mcp_servers.x.http_headers: `http_headers` applies only to a streamable HTTP server (`url`), not to a stdio one',
    );
    expect(problem('[mcp_servers.x]\nurl = "http://h/mcp"\nbearer_token = "secret"')).toMatch(/^mcp_servers\.x\.bearer_token: a bearer token cannot be written in the config/);
    expect(problem('[mcp_servers."my server"]\ncommand = "x"')).toBe('mcp_servers."my server": invalid server name; use only letters, digits, `_` and `-`');
    expect(problem('[mcp_servers]\nx = "npx"')).toBe('mcp_servers.x: expected a table, got "npx"');
  });
});
