import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildEnvironmentSpec,
  checkBearerTokenAllowed,
  isLoopbackHost,
  secondsToMilliseconds,
  validateEnvironmentId,
  validateWebsocketUrl,
} from '../../../src/config/environment-spec.js';
import { environmentsFromExecServerUrl, loadEnvironmentsConfig, parseEnvironmentsToml, type EnvironmentsFile } from '../../../src/config/environments.js';
import { LocalError, LocalErrorCode } from '../../../src/util/errors.js';

// Messages below were checked against codex-cli 0.169.0 (`codex exec` with a CODEX_HOME holding
// each file); the prefix before the last `: ` is ours and says where.

const HOME = '/home/u/.codex';
const FILE = `${HOME}/environments.toml`;

function parse(text: string): EnvironmentsFile {
  return parseEnvironmentsToml(text, { file: FILE, codexHome: HOME });
}

/** The error `parse` throws, checked to be an INVALID_CONFIG LocalError naming the file. */
function parseError(text: string): LocalError {
  try {
    parse(text);
  } catch (error) {
    expect(error).toBeInstanceOf(LocalError);
    const local = error as LocalError;
    expect(local.code).toBe(LocalErrorCode.InvalidConfig);
    expect(local.message.startsWith(`${FILE}: `)).toBe(true);
    return local;
  }
  throw new Error(`expected a parse error for:\n${text}`);
}

function message(text: string): string {
  return parseError(text).message;
}

/** One `[[environments]]` entry with id `a` plus the given lines. */
function entry(...lines: string[]): string {
  return ['[[environments]]', 'id = "a"', ...lines].join('\n');
}

function thrown(fn: () => unknown): LocalError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(LocalError);
    return error as LocalError;
  }
  throw new Error('expected a throw');
}

describe('parseEnvironmentsToml: a valid file', () => {
  it('parses both kinds, converts timeouts to ms, resolves a relative cwd against CODEX_HOME', () => {
    const result = parse(`
default = "ssh-dev"
include_local = true

[[environments]]
id = "devbox"
url = "  ws://127.0.0.1:8765  "
auth_bearer_token = "secret"
connect_timeout_sec = 5
initialize_timeout_sec = 2.5
skills = { required = ["lint", "deploy"] }

[[environments]]
id = "ssh-dev"
program = " ssh "
args = ["dev", "codex exec-server --listen stdio"]
env = { CODEX_LOG = "debug" }
cwd = "work/../repos"
initialize_timeout_sec = 0.25

[[environments]]
id = "abs"
program = "docker"
cwd = "/srv/app"

[[environments]]
id = "Remote_2"
url = "wss://exec.example.com/path?x=1"
auth_bearer_token = "t"
`);
    expect(result).toEqual({
      includeLocal: true,
      defaultId: 'ssh-dev',
      environments: [
        {
          kind: 'websocket',
          id: 'devbox',
          url: 'ws://127.0.0.1:8765',
          authBearerToken: 'secret',
          connectTimeoutMs: 5000,
          initializeTimeoutMs: 2500,
          requiredSkills: ['lint', 'deploy'],
        },
        {
          kind: 'stdio',
          id: 'ssh-dev',
          program: 'ssh',
          args: ['dev', 'codex exec-server --listen stdio'],
          env: { CODEX_LOG: 'debug' },
          cwd: `${HOME}/repos`,
          initializeTimeoutMs: 250,
        },
        { kind: 'stdio', id: 'abs', program: 'docker', args: [], env: {}, cwd: '/srv/app' },
        { kind: 'websocket', id: 'Remote_2', url: 'wss://exec.example.com/path?x=1', authBearerToken: 't' },
      ],
    });
  });

  it('an empty file means local only, default local', () => {
    expect(parse('')).toEqual({ includeLocal: true, defaultId: 'local', environments: [] });
  });

  it('accepts integer and zero timeouts, and -0.0', () => {
    const [spec] = parse(entry('url = "ws://127.0.0.1:1"', 'connect_timeout_sec = 0', 'initialize_timeout_sec = -0.0')).environments;
    expect(spec).toEqual({ kind: 'websocket', id: 'a', url: 'ws://127.0.0.1:1', connectTimeoutMs: 0, initializeTimeoutMs: 0 });
  });

  it('accepts skills as a sub-table, and an empty skills table', () => {
    expect(parse(entry('url = "ws://127.0.0.1:1"', '[environments.skills]', 'required = ["x"]')).environments[0]).toMatchObject({
      requiredSkills: ['x'],
    });
    expect(parse(entry('url = "ws://127.0.0.1:1"', 'skills = {}')).environments[0]).toMatchObject({ requiredSkills: [] });
  });

  it('resolves an empty cwd to CODEX_HOME', () => {
    expect(parse(entry('program = "x"', 'cwd = ""')).environments[0]).toMatchObject({ cwd: HOME });
  });

  it('keeps `LOCAL`: codex-cli 0.169.0 reserves `local` case-sensitively', () => {
    expect(parse('[[environments]]\nid = "LOCAL"\nurl = "ws://127.0.0.1:1"').environments[0]?.id).toBe('LOCAL');
  });
});

describe('parseEnvironmentsToml: a variable named __proto__', () => {
  it('is kept as a plain key of env, and touches no prototype', () => {
    const { environments } = parse(entry('program = "x"', 'env = { __proto__ = "v", B = "b" }'));
    const env = environments[0]?.kind === 'stdio' ? environments[0].env : {};
    expect(Object.getOwnPropertyNames(env)).toEqual(['__proto__', 'B']);
    expect(Object.getOwnPropertyDescriptor(env, '__proto__')?.value).toBe('v');
    expect(Object.getPrototypeOf(env)).toBe(Object.prototype);
    expect(message(entry('program = "x"', 'env = { __proto__ = 1 }'))).toBe(`${FILE}: environments[0].env.__proto__ (id \`a\`): invalid type: integer \`1\`, expected a string`);
  });
});

describe('parseEnvironmentsToml: TOML syntax', () => {
  it('names the file and the line and column', () => {
    const msg = message('[[environments]]\nid = "a\nurl = 1');
    expect(msg).toBe(`${FILE}: TOML syntax error at line 2, column 8: control characters are not allowed in strings`);
  });

  it('reads TOML 1.1: a multi-line inline table with a trailing comma', () => {
    const file = parse('[[environments]]\nid = "box"\nprogram = "ssh"\nenv = {\n  TERM = "dumb",\n  ESC = "\\e",\n}');
    expect(file.environments[0]).toMatchObject({ id: 'box', env: { TERM: 'dumb', ESC: '\u001b' } });
  });

  it('reports a redefined key', () => {
    expect(message('include_local = true\ninclude_local = false')).toBe(`${FILE}: TOML syntax error at line 2, column 1: trying to redefine an already defined table or value`);
  });
});

describe('parseEnvironmentsToml: top-level keys', () => {
  it('rejects an unknown key with the accepted list', () => {
    expect(message('bogus = 1')).toBe(`${FILE}: unknown field \`bogus\`, expected one of \`default\`, \`include_local\`, \`environments\``);
  });

  it('checks the types of default, include_local and environments', () => {
    expect(message('include_local = "yes"')).toBe(`${FILE}: include_local: invalid type: string "yes", expected a boolean`);
    expect(message('default = 5')).toBe(`${FILE}: default: invalid type: integer \`5\`, expected a string`);
    expect(message('[environments]\nid = "a"')).toBe(`${FILE}: environments: invalid type: map, expected a sequence`);
    expect(message('environments = ["a"]')).toBe(`${FILE}: environments[0]: invalid type: string "a", expected struct EnvironmentToml`);
  });

  it('reports the first problem in document order', () => {
    expect(message('include_local = "x"\nbogus = 1')).toContain('include_local: invalid type');
  });
});

describe('parseEnvironmentsToml: entry keys and types', () => {
  it('rejects an unknown entry key with the accepted list, naming the entry', () => {
    expect(message(entry('url = "ws://127.0.0.1:1"', 'bogus = 1'))).toBe(
      `${FILE}: environments[0] (id \`a\`): unknown field \`bogus\`, expected one of \`id\`, \`skills\`, \`url\`, ` +
        '`auth_bearer_token`, `program`, `args`, `env`, `cwd`, `connect_timeout_sec`, `initialize_timeout_sec`, `permissions`',
    );
  });

  it('requires id, after the keys of the entry have been read', () => {
    expect(message('[[environments]]\nurl = "ws://127.0.0.1:1"')).toBe(`${FILE}: environments[0]: missing field \`id\``);
    expect(message('[[environments]]\nbogus = 2\nurl = "ws://127.0.0.1:1"')).toContain('unknown field `bogus`');
  });

  it('reports type and unknown-key errors in document order', () => {
    expect(message(entry('url = 5', 'bogus = 1'))).toBe(`${FILE}: environments[0].url (id \`a\`): invalid type: integer \`5\`, expected a string`);
    expect(message(entry('bogus = 1', 'url = 5'))).toContain('unknown field `bogus`');
  });

  it('checks every field type and names the field', () => {
    const cases: [string[], string][] = [
      [['url = "ws://h"', 'auth_bearer_token = 5'], 'environments[0].auth_bearer_token (id `a`): invalid type: integer `5`, expected a string'],
      [['program = true'], 'environments[0].program (id `a`): invalid type: boolean `true`, expected a string'],
      [['program = "x"', 'args = "y"'], 'environments[0].args (id `a`): invalid type: string "y", expected a sequence'],
      [['program = "x"', 'args = ["y", 1]'], 'environments[0].args[1] (id `a`): invalid type: integer `1`, expected a string'],
      [['program = "x"', 'env = "A=1"'], 'environments[0].env (id `a`): invalid type: string "A=1", expected a map'],
      [['program = "x"', 'env = { A = 1 }'], 'environments[0].env.A (id `a`): invalid type: integer `1`, expected a string'],
      [['program = "x"', 'cwd = 5'], 'environments[0].cwd (id `a`): invalid type: integer `5`, expected path string'],
      [['url = "ws://h"', 'initialize_timeout_sec = "5"'], 'environments[0].initialize_timeout_sec (id `a`): invalid type: string "5", expected f64'],
      [['url = "ws://h"', 'skills = 5'], 'environments[0].skills (id `a`): invalid type: integer `5`, expected struct ScopedSkillsConfig'],
      [['url = "ws://h"', 'skills = { required = "x" }'], 'environments[0].skills.required (id `a`): invalid type: string "x", expected a sequence'],
      [['url = "ws://h"', 'skills = { required = [1] }'], 'environments[0].skills.required[0] (id `a`): invalid type: integer `1`, expected a string'],
      [['url = "ws://h"', 'skills = { bogus = 1 }'], 'environments[0].skills (id `a`): unknown field `bogus`, expected `required`'],
    ];
    for (const [lines, expected] of cases) expect(message(entry(...lines))).toBe(`${FILE}: ${expected}`);
    expect(message('[[environments]]\nid = 5\nurl = "ws://h"')).toBe(`${FILE}: environments[0].id: invalid type: integer \`5\`, expected a string`);
  });

  it('rejects negative, NaN and infinite timeouts with the Duration messages', () => {
    expect(message(entry('url = "ws://127.0.0.1:1"', 'connect_timeout_sec = -1'))).toBe(
      `${FILE}: environments[0].connect_timeout_sec (id \`a\`): cannot convert float seconds to Duration: value is negative`,
    );
    expect(message(entry('url = "ws://127.0.0.1:1"', 'initialize_timeout_sec = -1.5'))).toContain(
      'initialize_timeout_sec (id `a`): cannot convert float seconds to Duration: value is negative',
    );
    for (const value of ['nan', 'inf', '1e30']) {
      expect(message(entry('url = "ws://127.0.0.1:1"', `connect_timeout_sec = ${value}`))).toContain('cannot convert float seconds to Duration: value is either too big or NaN');
    }
  });

  it('reads the shape of every entry before applying any rule', () => {
    const text = '[[environments]]\nid = "a.b"\nurl = "ws://h"\n[[environments]]\nid = "c"\nbogus = 1';
    expect(message(text)).toBe(
      `${FILE}: environments[1] (id \`c\`): unknown field \`bogus\`, expected one of \`id\`, \`skills\`, \`url\`, ` +
        '`auth_bearer_token`, `program`, `args`, `env`, `cwd`, `connect_timeout_sec`, `initialize_timeout_sec`, `permissions`',
    );
  });
});

describe('parseEnvironmentsToml: environment ids', () => {
  function idMessage(id: string): string {
    return message(`[[environments]]\nid = ${JSON.stringify(id)}\nurl = "ws://127.0.0.1:1"`);
  }

  it('rejects an empty id', () => {
    expect(idMessage('')).toBe(`${FILE}: environments[0]: environment id cannot be empty`);
    expect(idMessage('   ')).toBe(`${FILE}: environments[0]: environment id cannot be empty`);
  });

  it('rejects surrounding whitespace', () => {
    expect(idMessage(' a')).toBe(`${FILE}: environments[0] (id \` a\`): environment id \` a\` must not contain surrounding whitespace`);
    expect(idMessage('none ')).toContain('environment id `none ` must not contain surrounding whitespace');
  });

  it('reserves local and none (none in any case)', () => {
    expect(idMessage('local')).toBe(`${FILE}: environments[0] (id \`local\`): environment id \`local\` is reserved`);
    for (const id of ['none', 'NONE', 'None']) expect(idMessage(id)).toContain(`environment id \`${id}\` is reserved`);
  });

  it('limits the length to 64', () => {
    expect(parse(`[[environments]]\nid = "${'a'.repeat(64)}"\nurl = "ws://h"`).environments).toHaveLength(1);
    expect(idMessage('a'.repeat(65))).toContain(`environment id \`${'a'.repeat(65)}\` cannot be longer than 64 characters`);
    expect(idMessage(`none${'a'.repeat(65)}`)).toContain('cannot be longer than 64 characters');
  });

  it('allows only ASCII letters, digits, - and _', () => {
    for (const id of ['a.b', 'a b', 'café', 'a/b']) {
      expect(idMessage(id)).toContain(`environment id \`${id}\` must contain only ASCII letters, numbers, '-' or '_'`);
    }
  });

  it('rejects a duplicated id, after checking the duplicate entry itself', () => {
    const dup = '[[environments]]\nid = "a"\nurl = "ws://127.0.0.1:1"\n[[environments]]\nid = "a"\n';
    expect(message(`${dup}program = "x"`)).toBe(`${FILE}: environments[1] (id \`a\`): environment id \`a\` is duplicated`);
    expect(message(dup)).toBe(`${FILE}: environments[1] (id \`a\`): environment \`a\` must set exactly one of url or program`);
  });
});

describe('parseEnvironmentsToml: url, program and the fields that depend on them', () => {
  it('requires exactly one of url or program', () => {
    const expected = `${FILE}: environments[0] (id \`a\`): environment \`a\` must set exactly one of url or program`;
    expect(message(entry())).toBe(expected);
    expect(message(entry('url = "ws://127.0.0.1:1"', 'program = "x"'))).toBe(expected);
    expect(message(entry('url = ""', 'program = "x"'))).toBe(expected);
  });

  it('requires ws:// or wss:// (the example of the brief)', () => {
    expect(message('[[environments]]\nid = "x"\nurl = "ws://h"\n[[environments]]\nid = "devbox"\nurl = "http://x"')).toBe(
      `${FILE}: environments[1] (id \`devbox\`): environment url \`http://x\` must use ws:// or wss://`,
    );
    expect(message(entry('url = "WS://127.0.0.1:1"'))).toContain('environment url `WS://127.0.0.1:1` must use ws:// or wss://');
  });

  it('rejects an empty or unparseable url', () => {
    expect(message(entry('url = "  "'))).toBe(`${FILE}: environments[0] (id \`a\`): environment url cannot be empty`);
    expect(message(entry('url = "ws://"'))).toContain('environment url `ws://` is invalid: ');
    expect(message(entry('url = "ws://exa mple.com"'))).toContain('environment url `ws://exa mple.com` is invalid: ');
  });

  it('trims program and rejects an empty one', () => {
    expect(message(entry('program = "   "'))).toBe(`${FILE}: environments[0] (id \`a\`): environment \`a\` program cannot be empty`);
  });

  it('requires program for args, env and cwd', () => {
    const expected = `${FILE}: environments[0] (id \`a\`): environment \`a\` args, env, and cwd require program`;
    expect(message(entry('url = "ws://127.0.0.1:1"', 'args = []'))).toBe(expected);
    expect(message(entry('url = "ws://127.0.0.1:1"', 'env = {}'))).toBe(expected);
    expect(message(entry('url = "ws://127.0.0.1:1"', 'cwd = "/tmp"'))).toBe(expected);
    expect(message(entry('args = []'))).toBe(expected);
  });

  it('requires url for connect_timeout_sec', () => {
    expect(message(entry('program = "x"', 'connect_timeout_sec = 1'))).toBe(`${FILE}: environments[0] (id \`a\`): environment \`a\` connect_timeout_sec requires url`);
  });

  it('requires url for auth_bearer_token', () => {
    const expected = `${FILE}: environments[0] (id \`a\`): environment \`a\` auth_bearer_token requires url`;
    expect(message(entry('program = "x"', 'auth_bearer_token = "t"'))).toBe(expected);
    expect(message(entry('auth_bearer_token = "t"'))).toBe(expected);
  });

  it('applies the cross-field rules in Codex order', () => {
    // args/env/cwd, then auth_bearer_token, then connect_timeout_sec, then url itself, then the token destination.
    expect(message(entry('auth_bearer_token = "t"', 'args = []'))).toContain('args, env, and cwd require program');
    expect(message(entry('program = "x"', 'auth_bearer_token = "t"', 'connect_timeout_sec = 1'))).toContain('auth_bearer_token requires url');
    expect(message(entry('url = "http://example.com"', 'auth_bearer_token = "t"'))).toContain('must use ws:// or wss://');
    expect(message(entry('url = "ws://example.com"', 'args = []', 'auth_bearer_token = "t"'))).toContain('args, env, and cwd require program');
    expect(message(entry('url = "ws://example.com"', 'program = "x"', 'auth_bearer_token = "t"'))).toContain('must set exactly one of url or program');
  });

  it('sends a bearer token only over wss:// or to a loopback ws:// destination', () => {
    expect(message(entry('url = "ws://example.com:1"', 'auth_bearer_token = "t"'))).toBe(
      `${FILE}: environments[0].auth_bearer_token (id \`a\`): exec-server WebSocket headers require wss:// or a loopback destination`,
    );
    for (const url of ['ws://0.0.0.0:1', 'ws://[::ffff:127.0.0.1]:1', 'ws://localhost.:1', 'ws://foo.localhost:1']) {
      expect(message(entry(`url = "${url}"`, 'auth_bearer_token = ""'))).toContain('exec-server WebSocket headers require wss:// or a loopback destination');
    }
    for (const url of [
      'ws://127.0.0.1:1',
      'ws://127.3.4.5:1',
      'ws://127.1:1',
      'ws://localhost:1',
      'ws://LocalHost:1',
      'ws://[::1]:1',
      'ws://[0:0:0:0:0:0:0:1]:1',
      'ws://u:p@127.0.0.1:1',
      ' ws://127.0.0.1:1 ',
      'wss://10.0.0.1:1',
    ]) {
      expect(parse(entry(`url = "${url}"`, 'auth_bearer_token = "t"')).environments[0]).toMatchObject({ authBearerToken: 't' });
    }
  });
});

describe('parseEnvironmentsToml: default', () => {
  const devbox = '[[environments]]\nid = "devbox"\nurl = "ws://127.0.0.1:1"\n';

  it('defaults to local when include_local (the default), else to none', () => {
    expect(parse(devbox)).toMatchObject({ includeLocal: true, defaultId: 'local' });
    expect(parse(`include_local = false\n${devbox}`)).toMatchObject({ includeLocal: false, defaultId: null });
  });

  it('accepts a configured id, trimmed, and local when included', () => {
    expect(parse(`default = " devbox "\n${devbox}`).defaultId).toBe('devbox');
    expect(parse(`default = "devbox"\ninclude_local = false\n${devbox}`).defaultId).toBe('devbox');
    expect(parse('default = "local"').defaultId).toBe('local');
  });

  it('treats none in any case as no default', () => {
    expect(parse('default = "none"').defaultId).toBeNull();
    expect(parse('default = " NoNe "\ninclude_local = false')).toEqual({ includeLocal: false, defaultId: null, environments: [] });
  });

  it('rejects an empty default', () => {
    expect(message('default = ""')).toBe(`${FILE}: default environment id cannot be empty`);
    expect(message('default = "  "')).toBe(`${FILE}: default environment id cannot be empty`);
  });

  it('rejects an id that is not configured, including local when excluded and other cases of local', () => {
    expect(message(`default = "zzz"\n${devbox}`)).toBe(`${FILE}: default environment \`zzz\` is not configured`);
    expect(message('default = "local"\ninclude_local = false')).toBe(`${FILE}: default environment \`local\` is not configured`);
    expect(message('default = "LOCAL"')).toBe(`${FILE}: default environment \`LOCAL\` is not configured`);
    expect(message(`default = "DEVBOX"\n${devbox}`)).toContain('default environment `DEVBOX` is not configured');
  });

  it('checks entries before the default', () => {
    expect(message(`default = "zzz"\n${entry()}`)).toContain('must set exactly one of url or program');
    expect(message(`default = "zzz"\n${entry('url = "ws://example.com:1"', 'auth_bearer_token = "t"')}`)).toContain(
      'exec-server WebSocket headers require wss:// or a loopback destination',
    );
  });
});

describe('shared validators (no file context)', () => {
  it('validateEnvironmentId throws Codex messages as INVALID_ARGUMENT', () => {
    expect(() => validateEnvironmentId('devbox-1_A')).not.toThrow();
    expect(() => validateEnvironmentId('LOCAL')).not.toThrow();
    const cases: [string, string][] = [
      ['', 'environment id cannot be empty'],
      [' a', 'environment id ` a` must not contain surrounding whitespace'],
      ['local', 'environment id `local` is reserved'],
      ['NONE', 'environment id `NONE` is reserved'],
      ['a'.repeat(65), `environment id \`${'a'.repeat(65)}\` cannot be longer than 64 characters`],
      ['a:b', "environment id `a:b` must contain only ASCII letters, numbers, '-' or '_'"],
    ];
    for (const [id, expected] of cases) {
      const error = thrown(() => validateEnvironmentId(id));
      expect(error.code).toBe(LocalErrorCode.InvalidArgument);
      expect(error.message).toBe(expected);
    }
  });

  it('validateWebsocketUrl trims and checks', () => {
    expect(validateWebsocketUrl(' wss://h/x ')).toBe('wss://h/x');
    expect(thrown(() => validateWebsocketUrl('')).message).toBe('environment url cannot be empty');
    expect(thrown(() => validateWebsocketUrl('http://h')).message).toBe('environment url `http://h` must use ws:// or wss://');
  });

  it('isLoopbackHost knows localhost, 127.0.0.0/8 and ::1 only', () => {
    for (const host of ['localhost', 'LOCALHOST', '127.0.0.1', '127.255.255.254', '127.1', '[::1]', '::1', '0:0:0:0:0:0:0:1']) {
      expect([host, isLoopbackHost(host)]).toEqual([host, true]);
    }
    for (const host of ['128.0.0.1', '0.0.0.0', '10.0.0.1', 'foo.localhost', 'localhost.', '::ffff:127.0.0.1', '::', 'example.com', '', 'localhost:80', 'a/b']) {
      expect([host, isLoopbackHost(host)]).toEqual([host, false]);
    }
  });

  it('checkBearerTokenAllowed throws the Codex message', () => {
    for (const url of ['wss://example.com', 'ws://127.0.0.1:1', 'ws://localhost/x', 'ws://[::1]:9']) {
      expect(() => checkBearerTokenAllowed(url)).not.toThrow();
    }
    for (const url of ['ws://example.com', 'ws://[::ffff:127.0.0.1]', 'http://localhost', 'not a url']) {
      const error = thrown(() => checkBearerTokenAllowed(url));
      expect(error.code).toBe(LocalErrorCode.InsecureDestination);
      expect(error.message).toBe('exec-server WebSocket headers require wss:// or a loopback destination');
    }
  });

  it('secondsToMilliseconds follows Duration::try_from_secs_f64', () => {
    expect(secondsToMilliseconds(5)).toBe(5000);
    expect(secondsToMilliseconds(0.0015)).toBe(2);
    expect(thrown(() => secondsToMilliseconds(-1)).message).toBe('cannot convert float seconds to Duration: value is negative');
    expect(thrown(() => secondsToMilliseconds(-Infinity)).message).toContain('value is negative');
    expect(thrown(() => secondsToMilliseconds(NaN)).message).toContain('value is either too big or NaN');
    expect(thrown(() => secondsToMilliseconds(2 ** 64)).message).toContain('value is either too big or NaN');
  });

  it('buildEnvironmentSpec needs a base directory for a relative cwd', () => {
    expect(thrown(() => buildEnvironmentSpec({ id: 'a', program: 'x', cwd: 'rel' })).message).toBe('environment `a` cwd must be absolute');
    expect(buildEnvironmentSpec({ id: 'a', program: 'x', cwd: 'rel' }, { baseDir: '/base' })).toEqual({
      kind: 'stdio',
      id: 'a',
      program: 'x',
      args: [],
      env: {},
      cwd: '/base/rel',
    });
    expect(buildEnvironmentSpec({ id: 'r', url: 'ws://h:1', connectTimeoutSec: 1.5 })).toEqual({
      kind: 'websocket',
      id: 'r',
      url: 'ws://h:1',
      connectTimeoutMs: 1500,
    });
  });
});

describe('environmentsFromExecServerUrl', () => {
  it.each([undefined, '', '   '])('%p → local only, default local', (value) => {
    expect(environmentsFromExecServerUrl(value)).toEqual({ includeLocal: true, defaultId: 'local', environments: [] });
  });

  it.each(['none', 'None', ' NONE '])('%p → no environment at all', (value) => {
    expect(environmentsFromExecServerUrl(value)).toEqual({ includeLocal: false, defaultId: null, environments: [] });
  });

  it.each([
    ['ws://127.0.0.1:8765', 'ws://127.0.0.1:8765'],
    [' wss://exec.example.com ', 'wss://exec.example.com'],
    ['http://127.0.0.1:9', 'http://127.0.0.1:9'],
  ])('%p → only remote, the default', (value, url) => {
    expect(environmentsFromExecServerUrl(value)).toEqual({
      includeLocal: false,
      defaultId: 'remote',
      environments: [{ kind: 'websocket', id: 'remote', url }],
    });
  });
});

describe('loadEnvironmentsConfig (real files)', () => {
  let home: string;

  async function readIfExists(path: string): Promise<string | undefined> {
    try {
      return await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  beforeEach(async () => {
    home = await mkdtemp(join(tmpdir(), 'cmx-envs-'));
  });

  afterEach(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it('uses the defaults without the file or the variable', async () => {
    await expect(loadEnvironmentsConfig({ codexHome: home, execServerUrl: undefined, readFile: readIfExists })).resolves.toEqual({
      includeLocal: true,
      defaultId: 'local',
      environments: [],
      source: 'default',
    });
  });

  it('uses CODEX_EXEC_SERVER_URL without the file', async () => {
    await expect(loadEnvironmentsConfig({ codexHome: home, execServerUrl: 'ws://127.0.0.1:9', readFile: readIfExists })).resolves.toEqual({
      includeLocal: false,
      defaultId: 'remote',
      environments: [{ kind: 'websocket', id: 'remote', url: 'ws://127.0.0.1:9' }],
      source: 'CODEX_EXEC_SERVER_URL',
    });
    await expect(loadEnvironmentsConfig({ codexHome: home, execServerUrl: 'none', readFile: readIfExists })).resolves.toMatchObject({
      includeLocal: false,
      defaultId: null,
      source: 'CODEX_EXEC_SERVER_URL',
    });
  });

  it('lets the file replace the variable entirely, resolving cwd against CODEX_HOME', async () => {
    const file = join(home, 'environments.toml');
    await writeFile(file, 'include_local = false\n[[environments]]\nid = "ssh"\nprogram = "ssh"\ncwd = "work"\n');
    await expect(loadEnvironmentsConfig({ codexHome: home, execServerUrl: 'ws://127.0.0.1:9', readFile: readIfExists })).resolves.toEqual({
      includeLocal: false,
      defaultId: null,
      environments: [{ kind: 'stdio', id: 'ssh', program: 'ssh', args: [], env: {}, cwd: join(home, 'work') }],
      source: file,
    });
  });

  it('names the file in validation errors', async () => {
    const file = join(home, 'environments.toml');
    await writeFile(file, '[[environments]]\nid = "a"\nurl = "http://x"\n');
    await expect(loadEnvironmentsConfig({ codexHome: home, execServerUrl: undefined, readFile: readIfExists })).rejects.toThrow(
      `${file}: environments[0] (id \`a\`): environment url \`http://x\` must use ws:// or wss://`,
    );
  });

  it('reports a file that exists but cannot be read', async () => {
    const file = join(home, 'environments.toml');
    await mkdir(file);
    const error: unknown = await loadEnvironmentsConfig({ codexHome: home, execServerUrl: undefined, readFile: readIfExists }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LocalError);
    expect((error as LocalError).code).toBe(LocalErrorCode.InvalidConfig);
    expect((error as LocalError).message).toContain(`${file}: failed to read environment config: `);
  });
});

describe('parseEnvironmentsToml: a datetime is not a table', () => {
  it('reports a datetime where an entry or a table belongs as serde does', () => {
    expect(message('environments = [1979-05-27]')).toBe(`${FILE}: environments[0]: invalid type: datetime \`1979-05-27\`, expected struct EnvironmentToml`);
    expect(message(entry('url = "ws://127.0.0.1:1"', 'skills = 1979-05-27'))).toBe(
      `${FILE}: environments[0].skills (id \`a\`): invalid type: datetime \`1979-05-27\`, expected struct ScopedSkillsConfig`,
    );
    expect(message(entry('program = "x"', 'env = 1979-05-27'))).toBe(`${FILE}: environments[0].env (id \`a\`): invalid type: datetime \`1979-05-27\`, expected a map`);
  });
});
