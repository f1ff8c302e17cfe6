import { buildEnvironmentSpec, type EnvironmentEntry, type EnvironmentSpec } from '../config/environment-spec.js';
import { EXEC_SERVER_URL_VARIABLE, type EnvironmentsFile } from '../config/environments.js';
import type { ExecServer } from '../exec/server.js';
import { LocalError, LocalErrorCode, errorMessage } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { localConnector, stdioConnector, websocketConnector } from './connectors.js';
import { Environment, type EnvironmentDescription } from './environment.js';
import type { LocalExecServer } from './local-server.js';

/** The id of the built-in environment served in-process. */
export const LOCAL_ENVIRONMENT_ID = 'local';

/** Options of {@link EnvironmentRegistry}. */
export interface EnvironmentRegistryOptions {
  /** The environments from environments.toml or CODEX_EXEC_SERVER_URL. */
  config: EnvironmentsFile;
  /** Where `config` came from, for `describe()`. */
  configSource: string;
  /** Serves `local` (a {@link LocalExecServer} is made at its first connection); required unless `config.includeLocal` is false. */
  localServer?: ExecServer | LocalExecServer;
  /** The launcher's environment; stdio environments get it with their `env` on top. */
  launcherEnv: NodeJS.ProcessEnv;
  logger?: Logger;
}

/** A registry entry description with whether it is among the defaults for new threads. */
export interface RegistryEntryDescription extends EnvironmentDescription {
  isDefault: boolean;
}

/** What {@link EnvironmentRegistry.remove} did. */
export interface RemovedEnvironment {
  /** The environment taken out (closed, or closing). */
  removed: Environment;
  /** The configured environment of the same id that the removed one had replaced, in effect again. */
  restored: Environment | undefined;
  /** Resolves once the removed environment's connection is closed (never rejects). */
  closed: Promise<void>;
}

/**
 * Every environment the server knows: `local`, the configured ones and those added at run time.
 * Environments connect lazily; adding one with an existing id replaces it (upsert).
 */
export class EnvironmentRegistry {
  readonly #environments = new Map<string, Environment>();
  /** The ids whose current environment was added at run time (the only ones that can be removed). */
  readonly #added = new Set<string>();
  readonly #options: EnvironmentRegistryOptions;
  readonly #logger: Logger;
  readonly #defaultId: string | null;

  constructor(options: EnvironmentRegistryOptions) {
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#defaultId = options.config.defaultId;
    if (options.config.includeLocal) {
      if (options.localServer === undefined) throw new LocalError(LocalErrorCode.InvalidConfig, 'the local environment needs an in-process exec-server');
      this.#environments.set(
        LOCAL_ENVIRONMENT_ID,
        new Environment({
          id: LOCAL_ENVIRONMENT_ID,
          kind: 'local',
          endpoint: 'in-process',
          source: 'built-in',
          connector: localConnector(options.localServer),
          logger: this.#logger,
        }),
      );
    }
    for (const spec of options.config.environments) this.#environments.set(spec.id, this.#create(spec, options.configSource));
  }

  /** The environment with this id, if any. */
  get(id: string): Environment | undefined {
    return this.#environments.get(id);
  }

  /** The launcher's environment variables (for settings that name a variable of this process). */
  get launcherEnv(): Readonly<NodeJS.ProcessEnv> {
    return this.#options.launcherEnv;
  }

  /** Every environment, `local` first, then in the order they were defined. */
  list(): Environment[] {
    return [...this.#environments.values()];
  }

  /**
   * The selection for a thread that names none: the default environment first, then every other
   * environment known now (as Codex's app-server), or nothing when the default is `none`.
   */
  defaultSelection(): string[] {
    if (this.#defaultId === null || !this.#environments.has(this.#defaultId)) return [];
    return [this.#defaultId, ...[...this.#environments.keys()].filter((id) => id !== this.#defaultId)];
  }

  /**
   * Registers or replaces an environment (upsert by id). Validation is environments.toml's:
   * `local` and `none` are reserved, ids are checked, exactly one of url or program, tokens only
   * over wss:// or loopback. The new environment connects lazily; its status is observable at once.
   */
  async add(entry: EnvironmentEntry, source = 'environment/add'): Promise<Environment> {
    const spec = buildEnvironmentSpec(entry);
    const replaced = this.#environments.get(spec.id);
    const environment = this.#create(spec, source);
    this.#environments.set(spec.id, environment);
    this.#added.add(spec.id);
    if (replaced !== undefined) {
      this.#logger.info('environment replaced', { environment: spec.id });
      await replaced.close();
    }
    return environment;
  }

  /**
   * Removes an environment added at run time and closes its connection (its MCP servers are
   * stopped first, see {@link Environment.beforeClose}). When it had replaced a configured
   * environment of the same id, that one is in effect again, as after a restart. The registry
   * changes before this returns, so a caller's check and the removal happen in one step.
   * @throws LocalError `NOT_FOUND` for an unknown id; `INVALID_ARGUMENT` for `local` and for an
   *   environment from the configuration, saying where it comes from.
   */
  remove(id: string): RemovedEnvironment {
    const environment = this.#environments.get(id);
    if (environment === undefined) {
      const known =
        this.list()
          .map((e) => `\`${e.id}\``)
          .join(', ') || '(none)';
      throw new LocalError(LocalErrorCode.NotFound, `unknown environment \`${id}\`; known environments: ${known}`);
    }
    if (!this.#added.has(id))
      throw new LocalError(LocalErrorCode.InvalidArgument, `environment \`${id}\` ${this.#origin(environment)}; only environments added with environment/add can be removed`);
    this.#added.delete(id);
    const configured = this.#options.config.environments.find((spec) => spec.id === id);
    const restored = configured === undefined ? undefined : this.#create(configured, this.#options.configSource);
    if (restored === undefined) this.#environments.delete(id);
    else this.#environments.set(id, restored);
    this.#logger.info(restored === undefined ? 'environment removed' : 'environment removed; the configured one is back', { environment: id });
    const closed = environment.close().catch((error: unknown) => this.#logger.warn('closing a removed environment failed', { environment: id, error: errorMessage(error) }));
    return { removed: environment, restored, closed };
  }

  /** Where a configured environment comes from, for the error that refuses to remove it. */
  #origin(environment: Environment): string {
    if (environment.kind === 'local') return 'is built in (this machine, served in-process)';
    if (this.#options.configSource === EXEC_SERVER_URL_VARIABLE) return `comes from the ${EXEC_SERVER_URL_VARIABLE} environment variable (read at start-up)`;
    return `comes from ${this.#options.configSource} (read at start-up; edit it and restart the server to change it)`;
  }

  /** Every environment's description with its default flag; never connects. */
  describe(): RegistryEntryDescription[] {
    const defaults = new Set(this.defaultSelection().slice(0, 1));
    return this.list().map((environment) => ({ ...environment.describe(), isDefault: defaults.has(environment.id) }));
  }

  /** Disconnects every environment. */
  async close(): Promise<void> {
    await Promise.all(this.list().map((environment) => environment.close()));
  }

  #create(spec: EnvironmentSpec, source: string): Environment {
    if (spec.kind === 'websocket') {
      return new Environment({
        id: spec.id,
        kind: 'websocket',
        endpoint: spec.url,
        source,
        connector: websocketConnector(spec.url, { authBearerToken: spec.authBearerToken, connectTimeoutMs: spec.connectTimeoutMs }),
        client: { initializeTimeoutMs: spec.initializeTimeoutMs },
        logger: this.#logger,
        permissions: spec.permissions,
      });
    }
    const command = { program: spec.program.trim(), args: spec.args, env: { ...this.#options.launcherEnv, ...spec.env }, cwd: spec.cwd };
    return new Environment({
      id: spec.id,
      kind: 'stdio',
      endpoint: [command.program, ...command.args].join(' '),
      source,
      connector: stdioConnector(command, this.#logger),
      client: { initializeTimeoutMs: spec.initializeTimeoutMs },
      logger: this.#logger,
      permissions: spec.permissions,
    });
  }
}
