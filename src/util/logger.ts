/** Log levels, most verbose first. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;

/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Structured fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** A structured logger. Lines go to a sink that is never the protocol's stdout. */
export interface Logger {
  trace(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger whose lines carry `component` in addition. */
  child(component: string): Logger;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Where lines go; the composition root passes stderr. */
  write: (line: string) => void;
  /** @default 'info' */
  level?: LogLevel;
  /** Emit one JSON object per line instead of text. @default false */
  json?: boolean;
  /** Clock, injectable for tests. @default Date.now */
  now?: () => number;
}

/** Creates a {@link Logger} writing to `options.write`. */
export function createLogger(options: LoggerOptions, component = 'codex-multienv'): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level ?? 'info');
  const now = options.now ?? Date.now;
  const emit = (level: LogLevel, message: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(level) < threshold) return;
    const time = new Date(now()).toISOString();
    if (options.json === true) {
      options.write(`${safeJson({ time, level, component, message, ...fields })}\n`);
      return;
    }
    const extra = fields !== undefined && Object.keys(fields).length > 0 ? ` ${safeJson(fields)}` : '';
    options.write(`${time} ${level.toUpperCase()} ${component}: ${message}${extra}\n`);
  };
  return { ...levelMethods(emit), child: (name) => createLogger(options, `${component}/${name}`) };
}

/** The five level methods of a logger, each handing its event to `emit`. */
function levelMethods(emit: (level: Exclude<LogLevel, 'silent'>, message: string, fields?: LogFields) => void): Omit<Logger, 'child'> {
  return {
    trace: (m, f) => emit('trace', m, f),
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

/** A logger that drops everything. */
export const silentLogger: Logger = createLogger({ write: () => undefined, level: 'silent' });

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_key, v: unknown) => (v instanceof Error ? v.message : v));
  } catch {
    return '"<unserializable>"';
  }
}

/** One log event as a structured sink sees it. */
export interface LogEntry {
  level: Exclude<LogLevel, 'silent'>;
  /** The logger's component path, e.g. `codex-multienv/threads`. */
  component: string;
  message: string;
  fields?: LogFields;
}

/**
 * A logger that writes through `primary` and also hands every event, whatever `primary`'s level,
 * to `sink` (which applies its own level), e.g. to forward logs to the MCP client.
 */
export function teeLogger(primary: Logger, sink: (entry: LogEntry) => void, component = 'codex-multienv'): Logger {
  const emit = (level: LogEntry['level'], message: string, fields?: LogFields): void => {
    primary[level](message, fields);
    sink(fields === undefined ? { level, component, message } : { level, component, message, fields });
  };
  return { ...levelMethods(emit), child: (name) => teeLogger(primary.child(name), sink, `${component}/${name}`) };
}
