import { parseAllowedHost, parseHttpListen } from '../../../src/cli/serve-command.js';
import { LocalError } from '../../../src/util/errors.js';

describe('serve --listen', () => {
  it.each([
    ['http://127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['http://[::1]:8080/', { host: '::1', port: 8080 }],
    ['http://localhost:3000', { host: '127.0.0.1', port: 3000 }],
    ['http://0.0.0.0:80', { host: '0.0.0.0', port: 80 }],
  ])('reads %s', (value, expected) => {
    expect(parseHttpListen(value)).toEqual(expected);
  });

  it.each(['https://127.0.0.1:0', 'ws://127.0.0.1:0', 'http://example.com:80', 'http://127.0.0.1', 'http://127.0.0.1:70000', 'http://127.0.0.1:0/mcp'])(
    'refuses %s, naming the form it wants',
    (value) => {
      expect(() => parseHttpListen(value)).toThrow(LocalError);
      expect(() => parseHttpListen(value)).toThrow(/expected `http:\/\/IP:PORT`/);
    },
  );
});

describe('serve --allow-host', () => {
  it('keeps a bare name or IPv4 address, lower case', () => {
    expect(parseAllowedHost(' MCP.Example.com ')).toBe('mcp.example.com');
    expect(parseAllowedHost('10.0.0.5')).toBe('10.0.0.5');
  });

  it.each(['https://mcp.example.com', 'mcp.example.com:443', 'mcp.example.com/mcp', '', '-bad.example'])('refuses %j', (value) => {
    expect(() => parseAllowedHost(value)).toThrow(/is not a host name/);
  });
});
