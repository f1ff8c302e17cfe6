import { existsSync, fstatSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { resolveConfig } from '../config/config.js';
import { CONFIG_FILE_NAME, parseConfigToml, type ConfigLayer } from '../config/layers.js';
import { overridesLayer, parseOverride } from '../config/overrides.js';
import type { EffectiveConfig } from '../config/settings.js';
import { parseMcpServers } from '../config/mcp-servers.js';
import type { ModelWorker } from '../model/worker-client.js';
import type { ModelClientSettings } from '../model/worker-protocol.js';
import type { ModelPort } from '../agent/model-port.js';
import { LoopbackRelay } from '../environments/loopback-relay.js';
import type { HeldInput } from '../mcp/early-answers.js';
import { answerWhileServerStarts, createMcpServer, serveOverStdio, type McpFace } from '../mcp/server.js';
import type { CodexAppServer } from '../session/codex-app-server.js';
import { EnginesByName, LazyEngine } from '../session/engine-choice.js';
import type { ThreadOwnership } from '../session/ownership.js';
import { ThreadManager } from '../session/thread-manager.js';
import { describeNetwork } from '../transport/network.js';
import { errorMessage, LocalError, LocalErrorCode } from '../util/errors.js';
import { deferred } from '../util/deferred.js';
import { teeLogger, type LogEntry, type Logger } from '../util/logger.js';
import { appServerEnvironment, prepareCodexHomeOverlay } from './codex-home-overlay.js';
import { appServerCommand, codexOverrideArgs, findCodexBinary } from './codex-engine.js';
import { loadRegistry } from './environments-command.js';
import { warnIfLocalSandboxUnavailable } from './local-sandbox.js';
import { MCP_SERVER_ARGS } from './mcp-args.js';
import { DETACHED_MESSAGE, RELAYED_INPUT_TYPE, TAKE_INPUT_MESSAGE, WORKER_FDS } from './mcp-relay.js';
import { lazyHttp, networkSettings } from './network.js';
import { PACKAGE_VERSION, USER_AGENT } from './version.js';
import { readGlobalInstructions, readCodexAuth, readOptionalFile, stderrLogger, type CodexAuth } from './runtime.js';
import { codexHome } from './codex-home.js';
import { currentSelfReferenceHost, selfReferenceFilter, type SelfReferenceHost } from './self-reference.js';
import { openThreadStorage } from './thread-storage.js';
import { settingsResolver } from './thread-settings.js';

/**
 * The thread that runs every model request of this server, so the HTTP exchanges and their event
 * streams do not hold the main thread: in the package, the script `model-worker.cjs` beside this
 * bundle. Run from the sources (there is no script to start), requests run on the main thread.
 */
function modelWorkerFor(env: NodeJS.ProcessEnv): { get: () => Promise<ModelWorker>; close: () => Promise<void> } | undefined {
  const script = fileURLToPath(new URL('./model-worker.cjs', import.meta.url));
  if (!existsSync(script)) return undefined;
  const defined: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) if (value !== undefined) defined[name] = value;
  // The worker's client side (and the model client's modules it names) load with the first thread.
  let worker: Promise<ModelWorker> | undefined;
  return {
    get: () => (worker ??= import('../model/worker-client.js').then(({ ModelWorker }) => new ModelWorker({ script, workerData: { env: defined, userAgent: USER_AGENT } }))),
    close: async () => {
      await (await worker)?.close();
    },
  };
}

/** How long turns interrupted at shutdown get to record their end. */
const SHUTDOWN_INTERRUPT_MS = 5_000;

/** Where the MCP server meets its client. */
export interface McpServerIo {
  input: Readable;
  output: Writable;
  /** Resolves when the client is gone even though `input` has not ended (the relay in front of a worker died). */
  clientGone?: Promise<void>;
  /** What a reader before this server (the relay) read of `input` and answered. */
  held?: HeldInput;
  /**
   * Called once when the client is gone and accepted turns go on: lets go of the client (its pipes,
   * the relay), so the client sees the server end while the turns finish.
   */
  detach?: () => void;
}

/** How long the worker waits for the relay's held input once it asked: the relay answers at once. */
const RELAY_HANDOVER_TIMEOUT_MS = 10_000;

/** The relay's one message: the client's input it read (and partly answered) while this process loaded. */
const RelayedInputSchema = z.object({ type: z.literal(RELAYED_INPUT_TYPE), bytes: z.base64(), answeredIds: z.array(z.string()) });

/**
 * Asks the relay for what it read of the client's input (see mcp-relay.ts); until it answers, only
 * the relay reads the client's stdin. Undefined when there is no relay to ask, or it is gone (the
 * client left).
 */
function takeRelayedInput(): Promise<HeldInput | undefined> {
  const send = process.send?.bind(process);
  if (send === undefined || !process.connected) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      process.off('message', onMessage);
      process.off('disconnect', onGone);
    };
    const onMessage = (message: unknown): void => {
      const relayed = RelayedInputSchema.safeParse(message);
      if (!relayed.success) return;
      done();
      resolve({ bytes: Buffer.from(relayed.data.bytes, 'base64'), answeredIds: relayed.data.answeredIds });
    };
    const onGone = (): void => {
      done();
      resolve(undefined);
    };
    const timer = setTimeout(() => {
      done();
      reject(new LocalError(LocalErrorCode.RequestTimeout, `the MCP relay did not hand over the client's input within ${RELAY_HANDOVER_TIMEOUT_MS} ms`));
    }, RELAY_HANDOVER_TIMEOUT_MS);
    process.on('message', onMessage);
    process.once('disconnect', onGone);
    // A relay that died meanwhile: its channel closes too (onGone).
    send(TAKE_INPUT_MESSAGE, undefined, {}, () => undefined);
  });
}

/**
 * `codex-multienv mcp-worker`: the MCP server as the relay (see mcp-relay.ts) starts it, in its
 * own session, speaking MCP on the client's pipes passed as extra file descriptors, after what
 * the relay read of them.
 */
export async function runMcpWorker(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  for (const fd of [WORKER_FDS.input, WORKER_FDS.output]) {
    try {
      fstatSync(fd);
    } catch {
      throw new LocalError(
        LocalErrorCode.InvalidArgument,
        `mcp-worker is started by the MCP server itself (file descriptor ${fd} is not open); run \`codex-multienv\` without a subcommand`,
      );
    }
  }
  // Once the relay is gone nobody reads stderr; a log line must not kill the turns still running.
  process.stderr.on('error', () => undefined);
  const gone = deferred<void>();
  process.once('disconnect', () => gone.resolve());
  const held = await takeRelayedInput();
  // Only now: a socket starts reading as it is made, and until the relay handed over, the pipe was its.
  const input = new Socket({ fd: WORKER_FDS.input, readable: true, writable: false });
  const output = new Socket({ fd: WORKER_FDS.output, readable: false, writable: true });
  // A client that vanishes can break its pipes (EPIPE, ECONNRESET): that is the client leaving,
  // never a reason to stop the turns.
  input.on('error', () => gone.resolve());
  output.on('error', () => gone.resolve());
  const detach = (): void => {
    if (process.connected) {
      // The relay may be dead already (SIGKILL) with its channel not yet seen closed: a failed
      // send is reported to this callback instead of crashing the worker.
      process.send?.(DETACHED_MESSAGE, undefined, {}, () => undefined);
      process.disconnect();
    }
    // Closing our copies of the client's pipes is what lets the client see the server end.
    input.destroy();
    output.end(() => output.destroy());
  };
  try {
    return await runMcpServer(argv, env, { input, output, clientGone: gone.promise, detach, ...(held === undefined ? {} : { held }) });
  } finally {
    // The client's pipes and an open IPC channel would keep this process alive, also after a
    // start-up error (a bad argument or config), which must reach the client as an exit.
    input.destroy();
    output.destroy();
    if (process.connected) process.disconnect();
  }
}

/** What {@link startMcpServer} composes the server from: the outside world, passed in. */
export interface McpServerStartOptions {
  /** The command line after the command: `-c key=value`, `--profile`, `--log-level`, `--portable-tool-names`, `--foreground`. */
  argv: string[];
  /** The server's environment: `CODEX_HOME`, provider keys, proxies and CAs, and what commands on `local` inherit. */
  env: NodeJS.ProcessEnv;
  /** The server's working directory: the base of relative `-c` paths, and the default thread and `local` cwd. */
  cwd: string;
  /** Makes the logger for the `--log-level` given (undefined without one); log events also reach the MCP client. */
  logger: (level: string | undefined) => Logger;
  /** How this server is launched, to leave the `[mcp_servers]` entries that launch it out of sessions; undefined when unknown. */
  selfReference: SelfReferenceHost | undefined;
  /**
   * Builds the thread ownership, given the `[multienv]` settings: e.g. leases in a PostgreSQL
   * database. The server gives every thread back when it closes (`releaseAll`).
   * @default lease files beside the thread files (`ThreadLeases`)
   */
  ownership?: (context: { limits: EffectiveConfig['multienv']; logger: Logger }) => Promise<ThreadOwnership>;
}

/** The composed MCP server, not yet connected to a client. */
export interface StartedMcpServer {
  /** The MCP face, to connect to a transport. */
  server: McpFace;
  /**
   * Builds another MCP face on the same threads, environments and engines (one per HTTP session);
   * its close() leaves them running.
   */
  createFace: () => McpFace;
  /** The threads, whose turns may outlive the client (see `runMcpServer`). */
  threads: ThreadManager;
  /** The `[multienv]` settings in effect (message bound, drain time, threads folder, …). */
  limits: EffectiveConfig['multienv'];
  /** The server's logger (tee'd into the client's logging notifications). */
  logger: Logger;
  /** Logs that the server is ready and checks the sandbox of `local`; call once it is connected. */
  ready(): void;
  /** Interrupts the turns still running, records them, and closes threads, environments, store and server. Idempotent. */
  close(): Promise<void>;
}

/**
 * Composes the MCP server as `codex-multienv` runs it, from explicit options instead of the
 * process's globals, so the CLI and an in-process test harness build the same thing. Configuration
 * is Codex's: `$CODEX_HOME/config.toml`, `-c key=value` overrides, and environments.toml.
 * @throws LocalError naming the file and key when the configuration is broken.
 */
export async function startMcpServer(options: McpServerStartOptions): Promise<StartedMcpServer> {
  const { env, cwd } = options;
  const { values } = parseArgs({ args: options.argv, options: MCP_SERVER_ARGS, strict: true });
  // Log events also go to the MCP clients (as logging notifications), to each face once it exists.
  const logForwarders = new Set<(entry: LogEntry) => void>();
  const logger = teeLogger(options.logger(values['log-level']), (entry) => {
    for (const forward of logForwarders) forward(entry);
  });
  const home = codexHome(env);
  const configPath = join(home, CONFIG_FILE_NAME);
  const text = await readOptionalFile(configPath);
  const baseLayers: ConfigLayer[] = [];
  if (text !== undefined) baseLayers.push(parseConfigToml(text, configPath, { baseDir: home }));
  baseLayers.push(overridesLayer('-c', (values.config ?? []).map(parseOverride), { baseDir: cwd }));
  // Resolve once at start-up so a broken configuration fails now, with the file and key named.
  const startup = resolveConfig({ layers: baseLayers, profile: values.profile, codexHome: home });
  for (const warning of [...startup.warnings, ...startup.config.permissionWarnings]) logger.warn(warning);
  let auth: CodexAuth | undefined;
  try {
    auth = await readCodexAuth(home);
  } catch (error) {
    logger.warn(`ignoring Codex's sign-in: ${errorMessage(error)}`);
  }
  const startupMcp = parseMcpServers(startup.config.mcpServers);
  for (const warning of startupMcp.warnings) logger.warn(warning);
  // Warns now, at start-up, about entries that launch this server; calls then skip them quietly.
  const skipSelf = selfReferenceFilter(options.selfReference, logger);
  skipSelf(startupMcp.servers);
  const instructionsFiles = new Map<string, string>();
  const instructionsFile = startup.config.modelInstructionsFile;
  if (instructionsFile !== undefined) instructionsFiles.set(instructionsFile, await readFile(instructionsFile, 'utf8'));
  const limits = startup.config.multienv;
  // One HTTP exchange for the model and the HTTP MCP servers reached from here, so both honour the
  // proxy and CA variables and share keep-alive connections.
  const network = networkSettings(env);
  if (network.error !== undefined) logger.warn(`model requests and HTTP MCP servers on local will fail: ${network.error}`);
  else if (network.httpsProxy !== undefined || network.httpProxy !== undefined || network.ca !== undefined) logger.info('network', { settings: describeNetwork(network) });
  const http = lazyHttp(network);
  const modelWorker = modelWorkerFor(env);
  // The model client's modules load with the first thread; without the worker (run from sources) it runs here.
  const newModel = async (settings: ModelClientSettings): Promise<ModelPort> => {
    if (modelWorker === undefined) {
      // Not together: both imports reach the exchange's module (see `lazyHttp`).
      const exchange = await http.exchange();
      const { ModelClient } = await import('../model/client.js');
      return new ModelClient({ ...settings, apiKey: settings.apiKey, http: exchange, userAgent: USER_AGENT });
    }
    const [{ WorkerModelClient }, worker] = await Promise.all([import('../model/worker-client.js'), modelWorker.get()]);
    return new WorkerModelClient(worker, settings);
  };

  // First: a database that cannot be used stops the start before anything else is started.
  const storage = await openThreadStorage({
    configuredUrl: limits.databaseUrl,
    envUrl: env.CODEX_MULTIENV_DATABASE_URL,
    threadsDir: limits.threadsDir,
    maxConcurrentTurns: limits.maxConcurrentTurns,
    leaseMs: limits.leaseMs,
    logger,
  });
  const { store } = storage;
  // Shared by every process of the store: a modern client's retry continues its call on any of them.
  const requestStateKey = await store.sharedSecret('request-state').catch(async (error: unknown) => {
    await storage.close();
    throw error;
  });
  const { registry, localServer } = await loadRegistry(env, values['log-level'], logger, cwd, network).catch(async (error: unknown) => {
    // The database's connections would keep the failed process alive.
    await storage.close();
    throw error;
  });
  const threadsLogger = logger.child('threads');
  // Several server processes may share the threads folder (a client restarting us, two clients).
  // Tests may put another ownership in (PostgreSQL leases over a threads folder).
  const ownership = options.ownership === undefined ? storage.ownership : await options.ownership({ limits, logger: threadsLogger });
  const codexBinary = findCodexBinary(limits.codexPath, env, cwd);
  // Made with the codex engine, when a thread first opens on it; started by its first turn.
  let appServer: CodexAppServer | undefined;
  // How the app-server reaches our environments; listens only once a Codex turn selects one.
  const relay = new LoopbackRelay({ registry, logger: logger.child('relay') });
  // The engines' modules load when a thread first opens on them: nothing before `initialize` needs them.
  const builtinEngine = new LazyEngine('builtin', async () => {
    const { BuiltinEngine } = await import('../session/builtin-engine.js');
    return new BuiltinEngine({
      registry,
      limits,
      logger: threadsLogger,
      now: () => new Date(),
      // Intl loads ICU's time zone data (~25 ms), once the first thread needs it.
      timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      mcpClientVersion: PACKAGE_VERSION,
      globalInstructions: () => readGlobalInstructions(home),
      localFetch: http.fetch,
    });
  });
  const codexEngine =
    codexBinary === undefined
      ? undefined
      : new LazyEngine('codex', async () => {
          const [{ CodexAppServer }, { CodexEngine }] = await Promise.all([import('../session/codex-app-server.js'), import('../session/codex-engine.js')]);
          appServer = new CodexAppServer({
            // Codex's own home but for environments.toml: it reaches only the environments we hand it.
            command: appServerCommand(codexBinary, appServerEnvironment(env, home), codexOverrideArgs(values.config ?? [])),
            beforeStart: async () => {
              await prepareCodexHomeOverlay(home, logger.child('codex'));
            },
            clientVersion: PACKAGE_VERSION,
            logger: logger.child('codex'),
          });
          return new CodexEngine({ appServer, exposeEnvironment: (id) => relay.expose(id), logger: threadsLogger, now: () => new Date() });
        });
  const threads = new ThreadManager({
    registry,
    store,
    engine: new EnginesByName(
      {
        builtin: builtinEngine,
        ...(codexEngine === undefined ? {} : { codex: codexEngine }),
      },
      () => 'no Codex CLI was found: set multienv.codex_path, put `codex` on PATH, or install @openai/codex',
    ),
    ownership,
    resolveSettings: settingsResolver({
      baseLayers: values.profile === undefined ? baseLayers : [...baseLayers, { source: '--profile', values: { profile: values.profile } }],
      home,
      env,
      logger,
      instructionsFiles,
      skipSelf,
      auth,
      newModel,
      codexBinary,
    }),
    defaultCwd: cwd,
    limits,
    logger: threadsLogger,
  });
  const createFace = (): McpFace => {
    let forward: ((entry: LogEntry) => void) | undefined;
    const face = createMcpServer({
      threads,
      registry,
      version: PACKAGE_VERSION,
      logger: logger.child('mcp'),
      approvalTimeoutMs: limits.approvalTimeoutMs,
      codexEvents: limits.codexEvents,
      allowRuntimeProgramEnvironments: limits.allowRuntimeProgramEnvironments,
      defaultWaitMs: limits.defaultWaitMs,
      requestStateKey,
      portableToolNames: values['portable-tool-names'] === true || limits.portableToolNames,
      onLogForwarder: (forwarder) => {
        forward = forwarder;
        logForwarders.add(forwarder);
      },
    });
    return {
      ...face,
      close: async () => {
        if (forward !== undefined) logForwarders.delete(forward);
        await face.close();
      },
    };
  };
  const server = createFace();
  let closing: Promise<void> | undefined;
  return {
    server,
    createFace,
    threads,
    limits,
    logger,
    ready: () => {
      logger.info('MCP server ready', { version: PACKAGE_VERSION, pid: process.pid, threads: storage.where, environments: registry.list().map((e) => e.id) });
      // After the client's pending input: its `initialize`, usually written right after it
      // started us, is read and answered before these spawn a process and read the threads folder.
      setImmediate(() => {
        if (closing !== undefined) return;
        void warnIfLocalSandboxUnavailable(startup.config, registry, localServer, logger).catch((error: unknown) =>
          logger.warn(`could not check the sandbox of \`local\`: ${errorMessage(error)}`),
        );
        // With many stored threads, opening their index takes a moment: done now, not at the first thread/list.
        void threads.warmUp().catch((error: unknown) => logger.debug('could not open the thread index ahead of thread/list', { error: errorMessage(error) }));
      });
    },
    close: () =>
      (closing ??= (async () => {
        await threads.interruptAll('the server is stopping', SHUTDOWN_INTERRUPT_MS);
        await threads.close();
        await modelWorker?.close();
        await appServer?.close();
        await relay.close();
        await registry.close();
        await localServer.close();
        await store.close();
        await storage.close();
        await server.close();
      })()),
  };
}

/**
 * `codex-multienv` (no subcommand) in one process (`--foreground`, or a terminal): serves MCP over
 * `io` (stdin/stdout) until a signal comes, or the client goes (then the accepted turns may finish
 * first, up to `multienv.drain_timeout_sec`), and stops.
 */
export async function runMcpServer(argv: string[], env: NodeJS.ProcessEnv, io: McpServerIo = { input: process.stdin, output: process.stdout }): Promise<number> {
  // Before anything else: a modern client's first request may come, and be answered, while the server starts.
  const starting = answerWhileServerStarts(io.input, io.output, PACKAGE_VERSION, io.held);
  let started: StartedMcpServer;
  try {
    started = await startMcpServer({ argv, env, cwd: process.cwd(), logger: (level) => stderrLogger(level, env), selfReference: currentSelfReferenceHost(env) });
  } catch (error) {
    starting.abandon();
    throw error;
  }
  const { server, threads, limits, logger } = started;
  const { input, answeredIds } = starting.handOver();
  const { closed: inputClosed } = await serveOverStdio(server, input, io.output, { maxMessageBytes: limits.maxMessageBytes, answeredIds, logger: logger.child('mcp') });
  const stopNow = new AbortController();
  const closed = new Promise<'client gone' | 'signal'>((resolve) => {
    void inputClosed.then(() => resolve('client gone'));
    void io.clientGone?.then(() => resolve('client gone'));
    const onSignal = (): void => {
      stopNow.abort();
      resolve('signal');
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  started.ready();
  // Without a drain time the turns are interrupted below before the client is let go, so that by
  // the time the client sees the server end, they are recorded.
  if ((await closed) === 'client gone' && threads.liveTurnCount > 0 && limits.drainTimeoutMs > 0) {
    // Accepted turns outlive their client: they finish and are stored, for codex-status later.
    // The connection is closed first, so approvals they ask are denied at once instead of waiting.
    await server.close();
    logger.info('the client went away; finishing the accepted turns first', { turns: threads.liveTurnCount, timeoutMs: limits.drainTimeoutMs, pid: process.pid });
    io.detach?.();
    const left = await threads.drain(limits.drainTimeoutMs, stopNow.signal);
    if (left > 0) logger.warn('interrupting turns still running', { turns: left });
  }
  await started.close();
  // After a signal stdin is still open, and reading it would keep the process alive.
  io.input.destroy();
  return 0;
}
