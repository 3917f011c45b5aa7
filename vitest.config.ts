import { defineConfig } from 'vitest/config';

// Two projects: `unit` (pure code, fast loop) and `integration` (real nats-server and ClickHouse).
// Integration files end in `.it.test.ts`; each spawns its own nats-server and uses its own database.
export default defineConfig({
  test: {
    pool: 'forks',
    // Integration files each spawn nats-server and an embedded ClickHouse; on 2 cores one file at a time is fastest.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    projects: [
      { extends: true, test: { name: 'unit', include: ['**/*.test.ts'], exclude: ['**/*.it.test.ts', 'node_modules/**'] } },
      { extends: true, test: { name: 'integration', include: ['**/*.it.test.ts'], exclude: ['node_modules/**'] } },
    ],
  },
});
