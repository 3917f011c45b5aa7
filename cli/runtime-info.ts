import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../common/config.ts';
import { procAvailable, procInfo, type ProcInfo } from '../common/nats-server.ts';

// How CLI commands find a running `meterline start` and its data folders: light on purpose (no
// NATS, ClickHouse or HTTP server), so commands that only read these start fast. runtime.ts
// re-exports what is public here.

/** Where `meterline start` records how to reach it, for the other CLI commands. */
export function runtimeFile(config: Config): string {
  return path.join(config.stateDir, 'runtime.json');
}

export interface RuntimeInfo {
  pid: number;
  natsUrl: string;
  httpUrl?: string;
  /** The embedded nats-server's pid, when this process runs one (it changes when it is restarted). */
  natsPid?: number;
}

export function readRuntimeInfo(config: Config): RuntimeInfo | undefined {
  try {
    const info = JSON.parse(fs.readFileSync(runtimeFile(config), 'utf8')) as RuntimeInfo;
    process.kill(info.pid, 0);
    // A pid reused by another program is not a running Meterline (Linux: its command line says).
    if (procAvailable() && info.pid !== process.pid) {
      const p = procInfo(info.pid);
      if (!p || !isMeterline(p)) return undefined;
    }
    return info;
  } catch {
    return undefined;
  }
}

export function chdbDir(config: Config): string {
  return path.resolve(config.CLICKHOUSE_DATA_DIR ?? path.join(config.stateDir, 'clickhouse'));
}

/** runtime.json as written, whether or not its process still runs. */
export function readRuntimeFile(config: Config): RuntimeInfo | undefined {
  try {
    const info = JSON.parse(fs.readFileSync(runtimeFile(config), 'utf8')) as RuntimeInfo;
    return Number.isInteger(info?.pid) && typeof info.natsUrl === 'string' ? info : undefined;
  } catch {
    return undefined;
  }
}

/** A Meterline process: `meterline …` (bin/meterline.mjs, or its bundle dist/meterline.mjs) or `node … cli/main.ts`. */
export function isMeterline(p: ProcInfo): boolean {
  return p.argv.some((a) => /^meterline(\.mjs)?$/.test(path.basename(a)) || /(^|[\\/])cli[\\/]main\.[cm]?[jt]s$/.test(a));
}
