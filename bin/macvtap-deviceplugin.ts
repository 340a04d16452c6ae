#!/usr/bin/env node
/**
 * macvtap-deviceplugin: serves `macvtap.network.kubevirt.io/<name>` resources to the kubelet.
 * Argument and environment handling only; the daemon lives in lib/deviceplugin.
 */
import { DEFAULT_STATE_DIR } from '../lib/state';
import {
  CONFIG_ENV,
  ConfigError,
  ConfigProblem,
  ConfigSource,
  Daemon,
  DEFAULT_PLUGIN_DIR,
  describeProblem,
  errorMessage,
  IfindexRange,
  LOG_LEVELS,
  Logger,
  LogLevel,
  logProblem,
  parseIfindexRange,
  readConfig,
} from '../lib/deviceplugin';
import { Operations } from '../lib/deviceplugin/ops';
import { OPS_USAGE, OpsFlags } from '../lib/deviceplugin/ops-flags';
import { faultPoint } from '../lib/util/faults';

const PROGRAM = 'macvtap-deviceplugin';

const USAGE = `Usage: ${PROGRAM} [options]

Configuration: the JSON array in $${CONFIG_ENV}, or --config FILE (watched; changes apply live).
  [{"name": "dataplane", "lowerDevice": "eth0", "mode": "bridge", "capacity": 100}]
  [] offers one resource per physical NIC or bond, named after it.

Options:
  --config FILE               read the configuration from FILE instead of $${CONFIG_ENV}
  --device-plugin-path DIR    the kubelet's device-plugin directory (default ${DEFAULT_PLUGIN_DIR})
  --state-dir DIR             where allocation records are kept (default ${DEFAULT_STATE_DIR})
  --log-level LEVEL           ${LOG_LEVELS.join(' | ')} (default info)
  --ifindex-range FROM-TO     create macvtaps only with ifindexes in this range (default: the kernel's choice)
  --discover-kinds K1,K2      with [], also offer links of these kinds (default: physical NICs and bonds only)
${OPS_USAGE}  --help                      show this help
`;

class UsageError extends Error {}

interface Options {
  configFile?: string;
  pluginDir: string;
  stateDir: string;
  logLevel: LogLevel;
  ifindexRange?: IfindexRange;
  discoverKinds: string[];
  ops: OpsFlags;
}

function parseArgs(argv: string[]): Options | 'help' {
  const opts: Options = {
    pluginDir: DEFAULT_PLUGIN_DIR,
    stateDir: DEFAULT_STATE_DIR,
    logLevel: 'info',
    discoverKinds: [],
    ops: new OpsFlags(),
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') return 'help';
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0 && arg.startsWith('--')) return arg.slice(eq + 1);
      const next = argv[++i];
      if (next === undefined) throw new UsageError(`${flag} needs a value`);
      return next;
    };
    const nonEmpty = (v: string): string => {
      if (v === '') throw new UsageError(`${flag} must not be empty`);
      return v;
    };
    switch (flag) {
      case '--config':
        opts.configFile = nonEmpty(value());
        break;
      case '--device-plugin-path':
        opts.pluginDir = nonEmpty(value());
        break;
      case '--state-dir':
        opts.stateDir = nonEmpty(value());
        break;
      case '--log-level': {
        const level = value();
        if (!LOG_LEVELS.includes(level as LogLevel))
          throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
        opts.logLevel = level as LogLevel;
        break;
      }
      case '--ifindex-range': {
        const range = parseIfindexRange(value());
        if (typeof range === 'string') throw new UsageError(`--ifindex-range: ${range}`);
        opts.ifindexRange = range;
        break;
      }
      case '--discover-kinds':
        opts.discoverKinds = value()
          .split(',')
          .map((k) => k.trim())
          .filter(Boolean);
        break;
      default:
        if (OpsFlags.knows(flag)) {
          opts.ops.set(flag, value());
          break;
        }
        throw new UsageError(`unknown argument ${JSON.stringify(arg)} (see --help)`);
    }
  }
  return opts;
}

/** Prints one line and exits: start-up problems never show a stack trace. */
function fail(message: string, code: number): never {
  process.stderr.write(`${PROGRAM}: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let opts: Options | 'help';
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    fail(errorMessage(err), 2);
  }
  if (opts === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  const log = new Logger({ level: opts.logLevel });
  const envText = process.env[CONFIG_ENV];
  let source: ConfigSource;
  if (opts.configFile !== undefined) {
    source = { kind: 'file', path: opts.configFile };
  } else if (envText !== undefined) {
    source = { kind: 'env', name: CONFIG_ENV, text: envText };
  } else {
    fail(`no configuration: set ${CONFIG_ENV} to a JSON array (or [] for one resource per NIC), or pass --config FILE`, 2);
  }
  let config;
  let configText: string;
  const problems: ConfigProblem[] = [];
  try {
    ({ config, text: configText } = readConfig(source, opts.pluginDir, (p) => problems.push(p)));
  } catch (err) {
    fail(err instanceof ConfigError ? err.message : errorMessage(err), 2);
  }
  faultPoint('Start', 'config-read');
  if (source.kind === 'file' && envText !== undefined) log.warn(`--config given: ignoring ${CONFIG_ENV}`);
  for (const p of problems) logProblem(log, p);
  // A bad entry is skipped and the others serve; only a configuration with nothing left to serve stops here.
  if (!config.discover && config.resources.length === 0) {
    const skipped = problems.filter((p) => p.level === 'error');
    const more = skipped.length > 1 ? ` (and ${skipped.length - 1} more, logged on stdout)` : '';
    fail(`nothing to serve: every entry was skipped; ${describeProblem(skipped[0])}${more}`, 2);
  }

  process.on('uncaughtException', (err) => {
    log.error('unexpected failure; exiting', { err: errorMessage(err) });
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.error('unexpected failure; exiting', { err: errorMessage(err) });
    process.exit(1);
  });

  let ops;
  try {
    ops = opts.ops.resolve(process.env, opts.pluginDir);
  } catch (err) {
    fail(errorMessage(err), 2);
  }
  const daemon = new Daemon({
    pluginDir: opts.pluginDir,
    stateDir: opts.stateDir,
    source,
    config,
    configText,
    ifindexRange: opts.ifindexRange,
    discoverKinds: opts.discoverKinds,
    log,
  });
  const operations = new Operations({ daemon, log, pluginDir: opts.pluginDir, stateDir: opts.stateDir, ...ops });
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('stopping', { signal });
    daemon
      .stop()
      .then(() => operations.stop())
      .then(
        () => process.exit(0),
        (err) => {
          log.error('stopping failed', { err: errorMessage(err) });
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  try {
    await operations.listen();
  } catch (err) {
    fail(errorMessage(err), 1);
  }
  const skippedAtStart = problems.filter((p) => p.level === 'error').length;
  if (skippedAtStart) daemon.events.emit('configEntriesRejected', { count: skippedAtStart });
  try {
    await daemon.start();
    await operations.start();
  } catch (err) {
    log.error('cannot start', { err: errorMessage(err) });
    process.exit(1);
  }
}

void main();
