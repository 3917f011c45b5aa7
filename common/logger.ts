import { pino, type Logger } from 'pino';

export type { Logger };

/** The one root logger; components take `logger.child({ component })`. */
export function createLogger(opts: { level?: string; pretty?: boolean } = {}): Logger {
  return pino({
    level: opts.level ?? 'info',
    redact: { paths: ['req.headers.authorization', 'headers.authorization', 'apiKey', 'token'], censor: '[redacted]' },
    base: { app: 'meterline' },
  });
}

/** A logger that writes nothing, for tests and CLI commands that print their own output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
