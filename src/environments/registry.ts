import { buildEnvironmentSpec, type EnvironmentEntry, type EnvironmentsFile, type EnvironmentSpec } from '../config/environments.js';
import type { ExecServer } from '../exec/server.js';
import { LocalError, LocalErrorCode } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { localConnector, stdioConnector, websocketConnector } from './connectors.js';
import { Environment, type EnvironmentDescription } from './environment.js';

/** The id of the built-in environment served in-process. */
export const LOCAL_ENVIRONMENT_ID = 'local';

/** Options of {@link EnvironmentRegistry}. */
export interface EnvironmentRegistryOptions {
  /** The environments from environments.toml or CODEX_EXEC_SERVER_URL. */
  config: EnvironmentsFile;
  /** Where `config` came from, for `describe()`. */
  configSource: string;
  /** Serves `local`; required unless `config.includeLocal` is false. */
  localServer?: ExecServer;
  /** The launcher's environment; stdio environments get it with their `env` on top. */
  launcherEnv: NodeJS.ProcessEnv;
  logger?: Logger;
}

/** A registry entry description with whether it is among the defaults for new threads. */
export interface RegistryEntryDescription extends EnvironmentDescription {
  isDefault: boolean;
}

/**
 * Every environment the server knows: `local`, the configured ones and those added at run time.
 * Environments connect lazily; adding one with an existing id replaces it (upsert).
 */
export class EnvironmentRegistry {
  readonly #environments = new Map<string, Environment>();
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
    if (replaced !== undefined) {
      this.#logger.info('environment replaced', { environment: spec.id });
      await replaced.close();
    }
    return environment;
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
