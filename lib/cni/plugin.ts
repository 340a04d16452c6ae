/**
 * One invocation of the plugin: CNI_* environment and stdin in, stdout text and exit code out. Never throws:
 * every failure becomes the spec's error result `{cniVersion, code, msg, details}` and exit code 1, and the log
 * gets one line (no stack traces anywhere).
 */
import { Command, decodeConfig, Environment, rawVersion, readCommand, readConfig, readEnvironment } from './config';
import { CniError, describeError, ErrorCode, errorResult } from './errors';
import { readHostConfig } from './host-config';
import { closeLog, configureLog, log } from './log';
import { stateFailure } from './state';
import { LATEST_VERSION, versionResult } from './version';

export interface PluginOutput {
  stdout: string;
  exitCode: number;
}

/** Runs the command in `env.CNI_COMMAND`. `readStdin` is called at most once. */
export async function runPlugin(env: NodeJS.ProcessEnv, readStdin: () => string): Promise<PluginOutput> {
  let config: Record<string, unknown> | undefined;
  let command: Command | undefined;
  try {
    command = readCommand(env);
    const stdin = readStdin();
    if (command === 'VERSION') return { stdout: json(versionResult(requestedVersion(stdin))), exitCode: 0 };
    // The host's settings first (the node admin's): the log goes where the admin looks before any input is read.
    const host = readHostConfig(env);
    configureLog({ level: host.logLevel, file: host.logFile });
    config = decodeConfig(stdin);
    const attachment: Environment | undefined =
      command === 'ADD' || command === 'DEL' || command === 'CHECK' ? readEnvironment(command, env) : undefined;
    const conf = readConfig(command, config, attachment, env, host);
    log.bind({
      command,
      ...(attachment && { container: attachment.containerId, ifname: attachment.ifname }),
      ...(conf.deviceID && { deviceID: conf.deviceID }),
    });
    log.debug(
      `network ${conf.name}, netns ${attachment?.netns || '-'}, mac ${conf.mac ?? '-'} (${conf.macSource ?? 'kernel'}), mtu ${conf.mtu ?? '-'}`,
    );
    // Each command's module is loaded only for that command (static paths: bundlers still see them).
    /* eslint-disable @typescript-eslint/no-require-imports */
    switch (command) {
      case 'ADD': {
        const { cmdAdd } = require('./add') as typeof import('./add');
        return { stdout: json(await cmdAdd(attachment as Environment, conf)), exitCode: 0 };
      }
      case 'DEL': {
        const { cmdDel } = require('./del') as typeof import('./del');
        cmdDel(attachment as Environment, conf);
        return { stdout: '', exitCode: 0 };
      }
      case 'CHECK': {
        const { cmdCheck } = require('./check') as typeof import('./check');
        cmdCheck(attachment as Environment, conf);
        return { stdout: '', exitCode: 0 };
      }
      case 'GC': {
        const { cmdGc } = require('./gc') as typeof import('./gc');
        cmdGc(conf);
        return { stdout: '', exitCode: 0 };
      }
      case 'STATUS': {
        const { cmdStatus } = require('./status') as typeof import('./status');
        cmdStatus(conf);
        return { stdout: '', exitCode: 0 };
      }
    }
    /* eslint-enable @typescript-eslint/no-require-imports */
  } catch (err) {
    const failure =
      err instanceof CniError
        ? err
        : (stateFailure(err) ?? new CniError(ErrorCode.Internal, `internal error during ${command ?? 'start-up'}: ${describeError(err)}`));
    log.error(failure.message, { code: failure.code, ...(failure.details && { details: failure.details }) });
    return { stdout: json(errorResult(failure, rawVersion(config) ?? LATEST_VERSION)), exitCode: 1 };
  } finally {
    closeLog();
  }
}

function requestedVersion(stdin: string): unknown {
  try {
    return (JSON.parse(stdin) as { cniVersion?: unknown } | null)?.cniVersion;
  } catch {
    return undefined;
  }
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
