import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ESLint, RuleTester } from 'eslint';
import tseslint from 'typescript-eslint';
import { afterAll, describe, it } from 'vitest';
// @ts-expect-error: the plugin is plain JavaScript (ESLint loads it without a build step)
import meterline from './boundaries.js';

RuleTester.afterAll = afterAll;
RuleTester.describe = describe;
RuleTester.it = it;

const root = path.resolve(import.meta.dirname, '..');
const at = (file: string) => path.join(root, file);
const tester = new RuleTester({ languageOptions: { parser: tseslint.parser, ecmaVersion: 2022, sourceType: 'module' } });

tester.run('meterline/layers', meterline.rules.layers, {
  valid: [
    { filename: at('rater/close.ts'), code: "import { averageOf } from '../usage/index.ts';" },
    { filename: at('rater/close.ts'), code: "import type { Meter } from '../meter/index.ts';" },
    { filename: at('api/app.ts'), code: "import { isPricingError } from '../rater/pricing/index.ts';" },
    { filename: at('usage/query.ts'), code: "import { Decimal } from '../common/decimal.ts';" },
    // Tests and benchmarks may reach inside a component.
    { filename: at('test/x.it.test.ts'), code: "import { queryUsage } from '../usage/query.ts';" },
    { filename: at('rater/x.test.ts'), code: "import { buildApp } from '../api/app.ts';" },
    // The browser code takes server types, never server code.
    { filename: at('web/src/types.ts'), code: "export type { Invoice } from '../../rater/invoice-types.ts';" },
    { filename: at('rater/pricing/tiers.ts'), code: "import type { Readable } from 'node:stream';" },
  ],
  invalid: [
    { filename: at('rater/billing.ts'), code: "import { buildApp } from '../api/app.ts';", errors: [{ message: /rater\/ may not import api\// }] },
    { filename: at('usage/store.ts'), code: "import { Processor } from '../processor/index.ts';", errors: [{ message: /usage\/ may not import processor\// }] },
    { filename: at('common/config.ts'), code: "export * from '../ingest/index.ts';", errors: [{ message: /common\/ may not import ingest\// }] },
    { filename: at('anomaly/scan.ts'), code: "import { queryUsage } from '../usage/query.ts';", errors: [{ message: /through its index\.ts/ }] },
    { filename: at('web/src/app.ts'), code: "import { averageOf } from '../../usage/index.ts';", errors: [{ message: /only with `import type`/ }] },
    { filename: at('rater/pricing/tiers.ts'), code: "import { createClient } from '@clickhouse/client';", errors: [{ message: /pure part/ }] },
    { filename: at('anomaly/detect.ts'), code: "import fs from 'node:fs';", errors: [{ message: /pure part/ }] },
  ],
});

describe('meterline/no-cycle', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meterline-cycle-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, code: string) => fs.writeFileSync(path.join(dir, name), code);
  const lint = async (file: string) => {
    const eslint = new ESLint({ cwd: dir, overrideConfigFile: true, overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser }, plugins: { meterline }, rules: { 'meterline/no-cycle': 'error' } }] });
    const [r] = await eslint.lintFiles([path.join(dir, file)]);
    return r!.messages.map((m) => m.message);
  };

  it('reports a run-time cycle through several files, naming the path', async () => {
    write('a.ts', "import { b } from './b.ts';\nexport const a = () => b;\n");
    write('b.ts', "import { c } from './c.ts';\nexport const b = () => c;\n");
    write('c.ts', "import { a } from './a.ts';\nexport const c = () => a;\n");
    const messages = await lint('a.ts');
    if (messages.length !== 1 || !messages[0]!.includes('a.ts → ') || !messages[0]!.includes('c.ts → ')) throw new Error(`expected one cycle a → b → c → a, got ${JSON.stringify(messages)}`);
  });

  it('ignores type-only imports (erased at run time)', async () => {
    write('d.ts', "import type { E } from './e.ts';\nexport interface D { e?: E }\n");
    write('e.ts', "import { type D } from './d.ts';\nexport interface E { d?: D }\nexport const e = 1;\n");
    const messages = [...(await lint('d.ts')), ...(await lint('e.ts'))];
    if (messages.length !== 0) throw new Error(`expected no cycle, got ${JSON.stringify(messages)}`);
  });
});
