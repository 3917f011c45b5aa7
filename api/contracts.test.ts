import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import ts from 'typescript';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { Anomaly } from '../anomaly/index.ts';
import type { AnomalyRecord } from '../anomaly/types.ts';
import type { DeadLetter as ProcessorDeadLetter, DeadLetters as DeadLetterStream } from '../processor/index.ts';
import type { Adjustment as RaterAdjustment, Interval, Plan } from '../rater/index.ts';
import type { UsageResult as ServerUsageResult } from '../usage/index.ts';
import type { UsageResult } from '../usage/contracts.ts';
import type { PortalTokenRecord as StoredPortalToken } from './portal-tokens.ts';
import {
  AccountSchema,
  AccountsSchema,
  PortalTokenCreatedSchema,
  PortalTokenRecordSchema,
  WhoAmISchema,
  type Account,
  type Adjustment,
  type DeadLetter,
  type DeadLetters,
  type PortalTokenCreated,
  type PortalTokenRecord,
  type Redriven,
  type WhoAmI,
} from './contracts.ts';
import { responseSchema } from './response-schema.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('response contracts', () => {
  // Checked by `tsc --noEmit`: a contract kept beside a server type (whose file the browser
  // cannot import) must be the same type, field for field.
  it('equal the types the server builds its responses from', () => {
    expectTypeOf<UsageResult>().toEqualTypeOf<ServerUsageResult>();
    expectTypeOf<AnomalyRecord>().toEqualTypeOf<Anomaly>();
    expectTypeOf<PortalTokenRecord>().toEqualTypeOf<StoredPortalToken>();
    expectTypeOf<Adjustment>().toEqualTypeOf<RaterAdjustment>();
    expectTypeOf<DeadLetter>().toEqualTypeOf<ProcessorDeadLetter>();
    expectTypeOf<DeadLetters>().toEqualTypeOf<Awaited<ReturnType<DeadLetterStream['list']>>>();
    expectTypeOf<Redriven>().toEqualTypeOf<Awaited<ReturnType<DeadLetterStream['redrive']>>>();
    // rater/contracts.ts lists a plan's intervals; periods.ts (not pure) steps by them.
    expectTypeOf<Plan['interval']>().toEqualTypeOf<Interval>();
  });

  // Fastify's serializer drops what a response schema does not list: every field of a contract
  // must come through the schema derived from it.
  const token: Required<PortalTokenRecord> = { id: 't1', customer: 'acme', name: 'portal for acme', prefix: 'mlp_abcde', createdAt: '2026-01-01T00:00:00.000Z', expiresAt: '2026-02-01T00:00:00.000Z', createdBy: 'key1' };
  const account: Required<Account> = {
    asOf: '2026-01-15T10:01:00.000Z',
    customer: { key: 'acme', name: 'Acme', currency: 'EUR', timeZone: 'Europe/Berlin' },
    period: { start: '2025-12-31T23:00:00.000Z', end: '2026-01-31T23:00:00.000Z', source: 'subscription' },
    subscriptions: [{ id: 'sub_1', plan: 'pro', planName: 'Pro' }],
    usage: [{ meter: 'tokens', name: 'Tokens', aggregation: 'SUM', value: '12345.000000001' }],
    projected: { amountSoFar: '10.00', projectedTotal: '31.00', currency: 'EUR' },
    projectedError: 'plan "gone" is missing',
    openAnomalies: 2,
    worstSeverity: 'critical',
  };
  const { asOf, ...summary } = account;
  const cases: [string, Parameters<typeof responseSchema>[0], unknown][] = [
    ['WhoAmI', WhoAmISchema, { id: 'k1', name: 'ops', scopes: ['read', 'billing'], prefix: 'ml_abcde' } satisfies Required<WhoAmI>],
    ['Account', AccountSchema, account],
    ['Account without a projection', AccountSchema, { ...account, projected: null, projectedError: undefined, worstSeverity: null, openAnomalies: 0 }],
    ['Accounts', AccountsSchema, { asOf, items: [summary, { ...summary, customer: { ...summary.customer, key: 'beta' }, projected: null, worstSeverity: null }] }],
    ['PortalTokenRecord', PortalTokenRecordSchema, { ...token, expiresAt: null }],
    ['PortalTokenCreated', PortalTokenCreatedSchema, { token: 'mlp_abcdefgh', portalUrl: '/ui/portal/#token=mlp_abcdefgh', record: token } satisfies Required<PortalTokenCreated>],
  ];
  it.each(cases)('%s: the derived response schema keeps every field', async (_, schema, body) => {
    const app = Fastify();
    app.get('/', { schema: { response: { 200: responseSchema(schema) } } }, async () => body);
    const res = await app.inject({ method: 'GET', url: '/' });
    await app.close();
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual(JSON.parse(JSON.stringify(body)));
  });

  // The browser code imports these contracts' types; a server module among them would bring
  // Node's types into its program (silently: through libraries' type references), and
  // node-only APIs could slip into the bundle unnoticed.
  it('keep the browser code free of Node types', () => {
    const configPath = path.join(ROOT, 'web', 'tsconfig.json');
    const config = ts.parseJsonConfigFileContent(ts.readConfigFile(configPath, (f) => ts.sys.readFile(f)).config, ts.sys, path.dirname(configPath));
    // The unit tests beside the pages run in Node (vitest): not part of the bundle.
    const program = ts.createProgram(config.fileNames.filter((f) => !f.endsWith('.test.ts')), config.options);
    const files = program.getSourceFiles().map((f) => path.relative(ROOT, f.fileName));
    expect(files.filter((f) => f.includes('@types/node'))).toEqual([]);
    // The server files among them type-check without Node (the pages themselves: `tsc -p web`).
    const server = program.getSourceFiles().filter((f) => !f.fileName.includes('/node_modules/') && !path.relative(ROOT, f.fileName).startsWith('web/'));
    expect(server.length).toBeGreaterThan(0);
    expect(server.flatMap((f) => program.getSemanticDiagnostics(f)).map((d) => `${d.file?.fileName}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`)).toEqual([]);
  });
});
