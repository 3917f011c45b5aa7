import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { connectNats } from '../common/nats.ts';
import { silentLogger } from '../common/logger.ts';
import type { NatsServerHandle } from '../common/nats-server.ts';
import { Ownership, ROUTER, type Unit } from '../processor/ownership.ts';
import { eventually, startTestNats } from './harness.ts';

/**
 * Partition ownership against a real nats-server: fair shares, hand-over when a member joins or
 * leaves, take-over within the lease TTL when a member dies, and never two owners at once.
 */
describe('partition ownership', () => {
  let nats: NatsServerHandle;
  const TTL = 1_500;
  const PARTITIONS = 8;
  // Every member, to check that when one takes a unit no other may still write for it.
  const members = new Map<string, Ownership>();
  const violations: string[] = [];

  beforeAll(async () => {
    nats = await startTestNats();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  async function member(holder: string, bucket: string) {
    const nc = await connectNats(nats.url, silentLogger());
    const held = new Set<Unit>();
    const own = await Ownership.open(
      jetstream(nc),
      { holder, partitions: PARTITIONS, ttlMs: TTL, replicas: 1, bucket },
      {
        acquired: async (u) => {
          for (const [other, o] of members) if (other !== holder && o.holds(u)) violations.push(`${holder} took unit ${u} while ${other} could still write`);
          held.add(u);
        },
        released: async (u) => {
          held.delete(u);
        },
      },
      silentLogger(),
    );
    members.set(holder, own);
    await own.start();
    return { own, nc, held, partitions: () => [...held].filter((u) => u !== ROUTER).length };
  }

  it('members split the partitions fairly, hand them over as members come and go, and take a dead member’s within the TTL', async () => {
    const bucket = `parts_${Date.now()}`;
    const a = await member('a', bucket);
    await eventually(async () => a.partitions(), (n) => n === PARTITIONS, 10_000);
    expect(a.held.has(ROUTER)).toBe(true);

    const b = await member('b', bucket);
    const c = await member('c', bucket);
    const shares = async () => [a.partitions(), b.partitions(), c.partitions()];
    // 8 partitions over 3 members: 3, 3 and 2 (members sorted by name take the extra ones).
    expect(await eventually(shares, (s) => s.join() === '3,3,2', 15_000)).toEqual([3, 3, 2]);

    // b leaves cleanly: its partitions are handed over at once.
    await b.own.stop();
    expect(await eventually(async () => [a.partitions(), c.partitions()], (s) => s.join() === '4,4', 15_000)).toEqual([4, 4]);

    // c dies (its connection drops, nothing is released): its leases expire and a takes them.
    const t0 = Date.now();
    await c.nc.close();
    await eventually(async () => a.partitions(), (n) => n === PARTITIONS, 20_000);
    const tookMs = Date.now() - t0;
    expect(tookMs).toBeLessThan(TTL * 6);
    // c never learned it lost them; the fence says it may not write any more.
    for (const u of c.held) expect(c.own.holds(u)).toBe(false);
    for (const u of a.held) expect(a.own.holds(u)).toBe(true);

    expect(violations).toEqual([]);
    await a.own.stop();
    await a.nc.close();
    await b.nc.close();
  });
});
