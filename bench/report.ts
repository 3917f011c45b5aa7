/** The markdown report of a bench run (`bench/run.ts`), from its results object: what `bench/results/bench-*.md` holds. */
import { machine, round } from './lib.ts';
import type { SectionResult, Sizes } from './harness.ts';
import { CUSTOMERS } from './stored-events.ts';

export function markdown(r: Record<string, unknown>): string {
  const m = r.machine as ReturnType<typeof machine>;
  const num = (x: number) => x.toLocaleString('en-US');
  const lines = [
    `# Meterline benchmark (${r.mode}${r.scale === 1 ? '' : `, sizes × ${String(r.scale)}`})`,
    '',
    `${String(r.startedAt)} · ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB · Node ${m.node} · ${m.nats} · chDB ${m.chdb} (ClickHouse embedded)` +
      (r.finishedAt ? ` · ${String(r.totalMinutes)} minutes` : ' · **run in progress or stopped**'),
    '',
    '| figure | value | target |',
    '|---|---|---|',
  ];
  const row = (f: () => [string, string, string?] | [string, string, string?][]) => {
    try {
      const x = f();
      for (const [a, b, c] of (Array.isArray(x[0]) ? x : [x]) as [string, string, string?][]) lines.push(`| ${a} | ${b} | ${c ?? ''} |`);
    } catch {
      /* not measured */
    }
  };
  type Lat = { targetEventsPerSecond: number; latencyMs: { p50: number; p99: number } };
  const latRows = (key: 'ingestLatency' | 'ingestLatencySeparate', label: string, ofWhat: string) => () =>
    Object.entries(r[key] as Record<string, Lat>)
      .filter(([k]) => k.startsWith('at'))
      .map(([k, v]) => [`ingest latency, ${label}, at ${k.slice(2, -3)} % of ${ofWhat} (${num(v.targetEventsPerSecond)} events/s, batches of 100)`, `p50 ${v.latencyMs.p50} ms, p99 ${v.latencyMs.p99} ms`, k === 'at50pct' ? 'p99 < 50 ms' : ''] as [string, string, string]);
  const e2eHttp = r.e2eHttp as { events: number; eventsPerSecond: number } | undefined;
  const e2eNats = r.e2eNats as { events: number; eventsPerSecond: number } | undefined;
  row(() => [`end to end, HTTP, ${num(e2eHttp!.events)} events (exact totals)`, `${num(e2eHttp!.eventsPerSecond)} events/s`, '≥ 100,000']);
  row(() => [`end to end, NATS, producer publishing on the partitions' subjects, ${num(e2eNats!.events)} events (exact totals)`, `${num(e2eNats!.eventsPerSecond)} events/s`, '≥ 100,000']);
  row(() => {
    const x = r.e2eNatsRouted as { events: number; eventsPerSecond: number };
    return [`end to end, NATS, producer publishing on a free-form subject (the router moves events onto partitions), ${num(x.events)} events (exact totals)`, `${num(x.eventsPerSecond)} events/s`];
  });
  row(() => {
    const x = r.roles as { events: number; eventsPerSecond: number };
    return [`end to end, every role in its own process (\`meterline store\` serving ClickHouse over HTTP), ${num(x.events)} events (exact totals)`, `${num(x.eventsPerSecond)} events/s`];
  });
  row(() => ['insert ceiling (same rows straight into ClickHouse)', `${num((r.ceilingInsert as { rowsPerSecond: number }).rowsPerSecond)} rows/s`]);
  row(() => ['end to end as a fraction of the insert ceiling', `HTTP ${(r.fractionOfInsertCeiling as { http: number }).http}, NATS ${(r.fractionOfInsertCeiling as { nats: number }).nats}`, '≥ 0.5']);
  row(() => ['decode + validate + meter values (one core)', `${num((r.ceilingDecode as { eventsPerSecond: number }).eventsPerSecond)} events/s`]);
  row(latRows('ingestLatency', '`meterline start` (all roles in one process)', 'the rate the pipeline sustains end to end'));
  row(latRows('ingestLatencySeparate', 'separate `meterline ingest` process', 'the rate the pipeline sustains end to end'));
  row(() => {
    const x = r.ingestLatencySeparate as { maxAcceptedEventsPerSecond: number };
    return ['maximum rate a separate `meterline ingest` accepts (batches of 1,000, 8 in flight; the processor falls behind)', `${num(x.maxAcceptedEventsPerSecond)} events/s`];
  });
  row(() => {
    const f = r.freshness as { events: number; ms: { p50: number; p99: number } };
    return [`freshness (send → visible in the usage API), ${num(f.events)} events`, `p50 ${f.ms.p50} ms, p99 ${f.ms.p99} ms`, 'p99 < 2 s'];
  });
  row(() => {
    const x = r.replay as { events: number; eventsPerSecond: number };
    return [`processor replay of ${num(x.events)} events (incl. process start and dedup load)`, `${num(x.eventsPerSecond)} events/s`];
  });
  type Stage = { storedRows: number; complete: boolean; p50Ms: number; p99Ms: number; fill: { rows: number; seconds: number; rowsPerSecond: number } };
  row(() =>
    Object.entries(r.usageQueries as Record<string, Stage>)
      .filter(([k, v]) => /^\d+$/.test(k) && v.p50Ms !== undefined)
      .map(([, v]) => [`usage query over HTTP, a customer's month by hour, ${num(v.storedRows)} stored events${v.complete ? '' : ' (fill stopped early: partial)'}`, `p50 ${v.p50Ms} ms, p99 ${v.p99Ms} ms`, 'p99 < 50 ms, flat'] as [string, string, string]),
  );
  row(() =>
    (r.close as { subscriptions: number; seconds: number; subscriptionsPerSecond: number; startPeakRssMiBAfter: number }[]).map((c) => [
      `billing close, ${num(c.subscriptions)} subscriptions`,
      `${c.seconds} s (${num(Math.round(c.subscriptionsPerSecond))}/s); peak RSS of \`meterline start\` after it ${c.startPeakRssMiBAfter} MiB`,
      c.subscriptions >= 100_000 ? '100,000 in < 60 s' : '',
    ] as [string, string, string]),
  );
  row(() => {
    const d = r.dedupMemory as {
      keys: number;
      scaleOfTarget: number;
      rssMiB: { after: number; delta: number };
      heapUsedMiB: { before: number; after: number };
      arrayBuffersMiB: { before: number; after: number };
      indexMiBAtTarget: number;
      bytesPerKey: number;
      storeLookupShare: number;
      addKeysPerSecond: number;
      filterLoadKeysPerSecond: number;
    };
    const at =
      d.scaleOfTarget === 1
        ? `864M keys in the window: the indexes hold ${num(d.indexMiBAtTarget)} MiB (${num(round(d.arrayBuffersMiB.after - d.arrayBuffersMiB.before, 1))} MiB of filters + ${num(round(d.heapUsedMiB.after - d.heapUsedMiB.before, 1))} MiB of heap for the exact keys; ${d.bytesPerKey} bytes/key)`
        : `${num(d.keys)} keys, filters and map scaled to ${round(d.scaleOfTarget * 100, 2)} % of the target; their heap + buffers scaled linearly to 864M keys: ${num(d.indexMiBAtTarget)} MiB`;
    return [
      'dedup index, 24 h at 10k/s in 8 partitions (1GiB of filters, 2M exact keys)',
      `${at}; ${round(d.storeLookupShare * 100, 1)} % of fresh keys looked up in the store; add() ${num(d.addKeysPerSecond)} keys/s, filter load ${num(d.filterLoadKeysPerSecond)} keys/s`,
      '24 h at 10k/s (864 M keys) within 1.5 GiB',
    ];
  });
  const x = r.rssMiB as Record<string, number>;
  const rssRow = (label: string, v: number | undefined) => v !== undefined && lines.push(`| peak RSS, ${label} | ${v} MiB | |`);
  rssRow('`meterline start` (ingest, processor, API, scheduler in one process; embedded ClickHouse), whole run', x.startPeak ?? x.startAfterReplay ?? x.startBeforeReplay);
  rssRow('`meterline ingest` (separate process, during its latency runs)', x.ingest);
  const roleLabel: Record<string, string> = {
    store: '`meterline store` (embedded ClickHouse served to the other roles)',
    processor: '`meterline processor`',
    api: '`meterline api`',
    scheduler: `\`meterline scheduler\` (idle; ${num(Math.max(...(r.sizes as Sizes).closeSubs))} subscriptions in its catalog)`,
    ingest: '`meterline ingest`',
  };
  const roles = r.roles as { events: number } | undefined;
  for (const [k, v] of Object.entries(x).filter(([k]) => k.startsWith('role_'))) rssRow(`${roleLabel[k.slice(5)] ?? k.slice(5)}, every role in its own process, ${num(roles?.events ?? 0)} events`, v);
  for (const [k, v] of Object.entries(x).filter(([k]) => /^api\d+$/.test(k))) rssRow(`\`meterline api\` (embedded ClickHouse holding ${num(Number(k.slice(3)))} stored events, answering the usage queries)`, v);
  for (const [k, v] of Object.entries(x).filter(([k]) => /^storedEventsFill\d+$/.test(k))) rssRow(`ClickHouse generating the stored events up to ${num(Number(k.slice(16)))}`, v);

  type Check = { events: number; identical: boolean; throughEventsRawAndEveryView: { rowsPerSecond: number }; shortcut: { rowsPerSecond: number } };
  const q = r.usageQueries as Record<string, unknown> & { check?: Check } | undefined;
  if (q) {
    const largest = Math.max(...(r.sizes as Sizes).queryRows);
    lines.push(
      '',
      `**Stored events** (the usage-query rows). Generated by ClickHouse itself (\`bench/stored-events.ts\`, \`INSERT … SELECT … FROM numbers()\`): ${num(CUSTOMERS)} customers (uniform), ` +
        'one SUM meter with a `model` dimension, each stage spread evenly over October 2026. Written straight into `meter_values` and `meter_usage_1h_v2` ' +
        "(the tables a customer's month by hour reads) with the materialized views' own SELECTs; events_raw, event_keys and the minute and day rollups are not filled.",
    );
    if (q.check) {
      const v = q.check.throughEventsRawAndEveryView.rowsPerSecond;
      lines.push(
        '',
        `The production path (insert into events_raw, five materialized views) stored ${num(v)} events/s on a sample of ${num(q.check.events)} events, ` +
          `which would take ~${Math.max(1, Math.round(largest / v / 60))} min for ${num(largest)}; the direct path ${num(q.check.shortcut.rowsPerSecond)} events/s on the same sample. ` +
          `Both paths stored identical \`meter_values\` rows and identical hour states (every group, every state finalized) on that sample: **${q.check.identical ? 'yes' : 'NO'}**.`,
      );
    }
    lines.push('');
    for (const [k, v] of Object.entries(q).filter(([k]) => /^\d+$/.test(k))) {
      const s = v as Stage & { rollupEqualsRaw: { equal: boolean }[]; fill: { cpuSeconds: number }; hourRollup: { parts: number; mergeWaitSeconds: number } };
      lines.push(
        `- ${num(Number(k))}: ${num(s.storedRows)} stored, the last ${num(s.fill.rows)} in ${s.fill.seconds} s (${num(s.fill.rowsPerSecond)} rows/s, ${s.fill.cpuSeconds} CPU s)${s.complete ? '' : ', **stopped early (time budget)**'}; ` +
          `hour rollup in ${s.hourRollup.parts} parts when queried (after ${s.hourRollup.mergeWaitSeconds} s of background merges); its totals equal the raw totals for the sample customers: ${s.rollupEqualsRaw.every((e) => e.equal) ? 'yes' : 'NO'}.`,
      );
    }
  }

  lines.push('', '| section | status | seconds | load average (1 min) at its end |', '|---|---|---|---|');
  for (const [k, v] of Object.entries(r.sections as Record<string, SectionResult>)) lines.push(`| ${k} | ${v.status}${v.error ? `: ${v.error.split('\n')[0]!.replaceAll('|', '\\|').slice(0, 300)}` : ''} | ${v.seconds} | ${v.loadAverage1m} |`);
  lines.push(
    '',
    `Raw figures: the JSON file beside this one. Reproduce: \`npm run bench${r.mode === 'quick' ? ':quick' : ''}${r.scale === 1 ? '' : ` -- --scale ${String(r.scale)}`}\`.`,
    '',
  );
  return lines.join('\n');
}
