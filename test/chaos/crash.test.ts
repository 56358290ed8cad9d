import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killAllServe, prng, sleep } from '../helpers/chaos-process.ts';
import { figureLog } from '../helpers/chaos-report.ts';
import { ChaosClient, newStats, planWorkload } from '../helpers/chaos-workload.ts';
import { deliveringNow, startChaosWorld, takeCensus, tallyDeliveries, expectNothingLostOrDoubled, type ChaosWorld, type Census } from '../helpers/chaos-world.ts';

/**
 * Crash test: the broker runs as a child process (`node bin/jit.mjs serve`)
 * and is SIGKILLed at random points while agents, approvers and the CLI
 * drive a mixed stream of tier-1/2/3 Vault and gate requests through it.
 * After the last restart it counts, from the SQLite file (read-only), the
 * development Vault and the webhook receivers, what a crash may never
 * produce: a second credential for one request, a Vault token or `jit-`
 * policy the broker does not know, a decision without its webhook, a
 * broken audit chain.
 *
 * Bounded in `npm test`; `npm run test:chaos` (CHAOS_FULL=1) runs the full
 * size. CHAOS_SEED=<n> replays a run's plan (kill points and workload).
 */
const FULL = process.env.CHAOS_FULL === '1';
const SIZE = FULL
  ? { ops: Number(process.env.CHAOS_OPS ?? 500), kills: Number(process.env.CHAOS_KILLS ?? 10), lanes: 10 }
  : { ops: Number(process.env.CHAOS_OPS ?? 150), kills: Number(process.env.CHAOS_KILLS ?? 3), lanes: 8 };
const SEED = process.env.CHAOS_SEED ? Number(process.env.CHAOS_SEED) : Math.floor(Math.random() * 2 ** 31);
const LEASE_MS = 60_000; // the dispatcher's lease: a row a killed broker was sending is due again after it

describe(`chaos: SIGKILL the broker ${SIZE.kills} times under ${SIZE.ops} requests`, () => {
  let world: ChaosWorld | undefined;

  beforeAll(async () => {
    world = await startChaosWorld();
    await world.start();
  }, 60_000);

  afterAll(async () => {
    await killAllServe();
    await world?.close();
  }, 30_000);

  it(
    'loses nothing: no duplicate credential, no orphan token or policy, every decision delivered, audit intact',
    async () => {
      const w = world!;
      const f = figureLog(`chaos crash test (${FULL ? 'full' : 'bounded'})`);
      f.line(`seed ${SEED} (replay with CHAOS_SEED=${SEED}), ${SIZE.ops} operations on ${SIZE.lanes} lanes, ${SIZE.kills} SIGKILLs, broker ${w.url}`);
      process.stdout.write(`chaos seed: ${SEED}\n`);
      const rand = prng(SEED);
      const ops = planWorkload(rand, SIZE.ops, SEED);
      const killAt = Array.from({ length: SIZE.kills }, () => Math.floor((0.08 + rand() * 0.82) * SIZE.ops)).sort((a, b) => a - b);
      const killDelays = killAt.map(() => Math.floor(rand() * 400));
      const stats = newStats();
      const client = new ChaosClient(w, stats);

      // Workload: lanes take the next operation until none is left.
      let next = 0;
      const t0 = Date.now();
      const lane = async () => {
        while (next < ops.length) {
          const op = ops[next++]!;
          try {
            await client.run(op);
          } catch (err) {
            stats.unexpected.push(`op ${op.n} ${op.kind}: threw ${(err as Error).message}`);
          }
        }
      };
      // Kills: at each planned point (operations started), after a random few hundred ms, SIGKILL and restart.
      const downtimes: number[] = [];
      let midDelivery = 0;
      const killer = (async () => {
        for (let k = 0; k < killAt.length; k++) {
          while (next < killAt[k]!) await sleep(20);
          await sleep(killDelays[k]!);
          if (!FULL) {
            // Bounded run: aim the kill between two deliveries, so no event sits out the 60 s lease
            // of the killed dispatcher (the full run kills blindly and waits the leases out).
            const until = Date.now() + 2_000;
            while ((await deliveringNow(w.db)) > 0 && Date.now() < until) await sleep(5);
          }
          const down = Date.now();
          await w.kill();
          const leased = await deliveringNow(w.db);
          if (leased > 0) midDelivery += leased;
          await sleep(Math.floor(rand() * 300));
          await w.start();
          downtimes.push(Date.now() - down);
          f.line(`kill ${k + 1}: SIGKILL after ${next} operations started (+${killDelays[k]} ms), back after ${downtimes.at(-1)} ms`);
        }
      })();
      await Promise.all([...Array.from({ length: SIZE.lanes }, lane), killer]);
      const workloadMs = Date.now() - t0;
      f.line(`events left leased by a killed dispatcher (kill landed mid-delivery): ${midDelivery}`);
      f.line(`workload done in ${(workloadMs / 1000).toFixed(1)} s; broker start times ${w.startTimesMs.join(', ')} ms`);

      // Settle: reconciliation done, nothing unsettled, the outbox drained. A row the killed broker
      // was sending is leased to it for 60 s, so wait up to the last such lease (plus slack).
      let census: Census = await takeCensus(w.db, w.vault);
      const settleStart = Date.now();
      const leaseDeadline = census.leaseUntil ? census.leaseUntil + 15_000 : 0;
      const settleDeadline = Math.max(Date.now() + 30_000, leaseDeadline);
      if (census.leaseUntil) f.line(`events being delivered when the workload ended: ${census.outbox.delivering} (any a killed broker held are redelivered after the ${LEASE_MS / 1000} s lease)`);
      for (;;) {
        let healthy = false;
        try {
          const h = await fetch(`${w.url}/healthz`);
          const body = (await h.json()) as { outbox_pending?: number };
          healthy = h.status === 200 && body.outbox_pending === 0;
        } catch {
          /* not up */
        }
        census = await takeCensus(w.db, w.vault);
        const settled = healthy && census.unsettledCredentials === 0 && census.orphanPolicies.length === 0 && census.outbox.pending + census.outbox.delivering === 0;
        if (settled || Date.now() > settleDeadline) break;
        await sleep(500);
      }
      f.line(`settled ${((Date.now() - settleStart) / 1000).toFixed(1)} s after the workload`);

      // Webhooks: every delivered one carries a valid signature; map them to (request, type).
      const tally = tallyDeliveries(w, census, client);
      const { badSignatures, unreadable, mismatched, idsPerEvent, expected, undelivered, duplicateEvents, redeliveries, clientDuplicates } = tally;

      const audit = await w.cli(['audit', 'verify']);
      const posts = w.postsPerRequest();
      const doublePosts = [...posts.values()].filter((n) => n > 1).length;
      const output = w.outputs();
      if (process.env.CHAOS_LOG) writeFileSync(process.env.CHAOS_LOG, output);
      const errorLines = output.split('\n').filter((l) => /"level":(50|60)/.test(l));

      // Every 500 the client got, with its cause from the broker log (found by X-Request-Id).
      const causes = new Map<string, number>();
      for (const e of stats.serverErrors) {
        const line = output.split('\n').find((l) => l.includes(e.requestId) && l.includes('"err"'));
        const cause = /"message":"([^"]*)"/.exec(line ?? '')?.[1] ?? 'unknown';
        const k = `${e.what}: ${cause}`;
        causes.set(k, (causes.get(k) ?? 0) + 1);
      }
      const busy500 = stats.serverErrors.filter((e) => output.split('\n').some((l) => l.includes(e.requestId) && l.includes('database is locked'))).length;
      const other500 = stats.serverErrors.length - busy500;
      const duplicates = census.dbDuplicateCredentials.length + census.vaultDuplicateTokens.length + clientDuplicates.length + duplicateEvents.length;
      const orphans = census.orphanTokens.length + census.orphanPolicies.length;
      const knownBug = census.sharedPolicyOrphans.length;
      f.line(`client: ${JSON.stringify({ ...stats, serverErrors: stats.serverErrors.length, oddAnswers: stats.oddAnswers.length, unexpected: stats.unexpected.length })}`);
      for (const [k, n] of causes) f.line(`500 answers: ${n}× ${k}${k.includes('database is locked') ? ' (known bug: SQLITE_BUSY on a read-then-write transaction while another process writes; see test/fault/sqlite-busy.test.ts)' : ''}`);
      f.line(`requests by status: ${JSON.stringify(census.byStatus)}`);
      f.line(`vault: ${census.vaultTokens} tokens, ${census.jitPolicies} jit- policies, ${census.liveVaultCredentials} live vault credentials, ${census.liveGateCredentials} live gate credentials`);
      f.line(`duplicates: db rows ${census.dbDuplicateCredentials.length}, vault tokens per request ${census.vaultDuplicateTokens.length}, secrets received per request ${clientDuplicates.length}, events with 2+ webhook-ids ${duplicateEvents.length}`);
      f.line(`orphans: tokens ${census.orphanTokens.length} ${census.orphanTokens.slice(0, 5).join(' ')}, policies ${census.orphanPolicies.length} ${census.orphanPolicies.slice(0, 5).join(' ')}`);
      if (knownBug) {
        f.line(
          `KNOWN BUG: ${knownBug} of those tokens belong to a mint the kill interrupted, and stay bound to a shared grant policy that live credentials still hold ` +
            `(${census.sharedPolicyDuplicates.length} of the duplicate-token requests are the same thing); see test/fault/vault-down.test.ts`,
        );
      }
      if (census.stuckTier1.length) f.line(`KNOWN BUG: ${census.stuckTier1.length} tier-1 request(s) left approved with no credential (killed between commit and issue): ${census.stuckTier1.join(' ')}; see test/fault/crash-states.test.ts`);
      f.line(`ended credentials whose token still grants: ${census.endedButAlive.length}; live credentials broken in Vault: ${census.brokenLive.length} ${census.brokenLive.slice(0, 5).join(' ')}; unsettled rows: ${census.unsettledCredentials}`);
      f.line(`webhooks: ${expected.size} decision events expected, ${idsPerEvent.size} delivered (${redeliveries} redeliveries of the same id), ${undelivered.length} undelivered ${undelivered.slice(0, 5).join(' ')}; outbox ${JSON.stringify(census.outbox)}; bad signatures ${badSignatures}, unreadable ${unreadable}, id/event mismatches ${mismatched}`);
      f.line(`telegram: ${posts.size} requests posted, ${doublePosts} posted twice; broker error/fatal log lines: ${errorLines.length}`);
      f.line(`audit verify: exit ${audit.code} ${audit.stdout.trim()}${audit.stderr.trim() ? ` / ${audit.stderr.trim().split('\n').at(-1)}` : ''}`);
      for (const u of stats.unexpected.slice(0, 10)) f.line(`unexpected: ${u}`);
      for (const e of errorLines.slice(0, 5)) f.line(`broker error: ${e.slice(0, 400)}`);

      f.set('seed', SEED);
      f.set('requests_sent', stats.requestCalls);
      f.set('operations', stats.ops);
      f.set('kills', downtimes.length);
      f.set('duplicates', duplicates);
      f.set('orphans', orphans);
      f.set('known_bug_shared_policy_orphans', knownBug);
      f.set('known_bug_stuck_tier1', census.stuckTier1.length);
      f.set('undelivered_decisions', undelivered.length);
      f.set('audit', audit.code === 0 ? 'intact' : `FAILED(${audit.code})`);
      f.set('http_500_sqlite_busy', busy500);
      f.set('http_500_other', other500);
      f.set('unexpected', stats.unexpected.length);
      f.print();

      const stopped = await w.stop();
      expect.soft(stopped, 'graceful stop after the run').toBe(0);
      expect.soft(downtimes.length).toBe(SIZE.kills);
      expectNothingLostOrDoubled(census, tally, audit.code, stats.unexpected);
      expect.soft(other500, [...causes.keys()].join('; ')).toBe(0);
      expect.soft(busy500).toBe(0);
    },
    FULL ? 900_000 : 150_000,
  );
});
