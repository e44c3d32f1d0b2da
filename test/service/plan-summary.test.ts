/**
 * Plan views (docs/api.md (Reconcile) "Plan views"): the summary's counts are the full lists' lengths,
 * its APQN ranges cover exactly the listed APQNs, its first entries are the lists' first entries; and
 * the ranges themselves (unit).
 */
import t, { type Test } from 'tap'
import { formatApqn } from '../../src/domain/ids.js'
import { apqnSet, SUMMARY_FIRST, SUMMARY_RANGES, summarizePlan } from '../../src/service/plan-summary.js'
import type { ApqnSetSummary, PlanAnswer } from '../../src/service/index.js'
import { forEachDatabase } from '../store/pg-helper.js'
import { serviceFixture, U1, U2, U3 } from './service-fixture.js'

/** Every APQN a range list names. */
function expand(ranges: string[]): string[] {
  const out: string[] = []
  for (const r of ranges) {
    const [from, to = from] = r.split('-') as [string, string?]
    const [a, d0] = from.split('.').map((x) => parseInt(x, 16)) as [number, number]
    const [a1, d1] = to.split('.').map((x) => parseInt(x, 16)) as [number, number]
    if (a1 !== a) throw new Error(`a range spans adapters: ${r}`)
    for (let d = d0; d <= d1; d++) out.push(formatApqn(a, d))
  }
  return out
}

t.test('apqnSet: ranges of consecutive domains per adapter, in APQN order, bounded', async (t) => {
  t.same(apqnSet([]), { count: 0, ranges: [], moreRanges: 0 })
  t.same(apqnSet(['05.0004', '05.0002', '05.0003', '06.00ff', '05.0007', '05.0004']), {
    count: 6,
    ranges: ['05.0002-05.0004', '05.0007', '06.00ff'],
    moreRanges: 0,
  })
  const all: string[] = []
  for (let a = 0; a < 256; a++) for (let d = 0; d < 256; d++) all.push(formatApqn(a, d))
  const s = apqnSet(all)
  t.equal(s.count, 65536)
  t.equal(s.ranges.length, SUMMARY_RANGES)
  t.equal(s.ranges[0], '00.0000-00.00ff')
  t.equal(s.moreRanges, 256 - SUMMARY_RANGES, 'one range per adapter; those left out are counted')
  const odd = apqnSet(Array.from({ length: 200 }, (_, i) => formatApqn(7, i * 2)))
  t.equal(odd.ranges.length + odd.moreRanges, 200, 'no two of them are consecutive')
})

/** The lists of a full answer. */
function lists(p: PlanAnswer): Extract<PlanAnswer, { view: 'full' }> {
  if (p.view !== 'full') throw new Error(`expected the full view, got ${p.view}`)
  return p
}

function coversExactly(t: Test, set: ApqnSetSummary, listed: string[], what: string) {
  t.equal(set.count, listed.length, `${what}: count`)
  t.equal(set.moreRanges, 0, `${what}: every range shown`)
  t.same(new Set(expand(set.ranges)), new Set(listed), `${what}: the ranges name exactly the listed APQNs`)
}

forEachDatabase(t, async (t, db) => {
  const { service } = await serviceFixture(t, db)
  // Demo profile: adapters 0,1,2,5,6,7; domains 1,2,4,5,0x0a,0x47. U1 is stored with 05.0004; then a
  // proposal that claims APQNs of the host and of nobody, conflicts with U1 (a violation), drains host
  // queues and has a filtered adapter (3 is not in the configuration).
  await service.setMasks('local', { apmask: '-5', aqmask: '-4' })
  await service.createMdev('local', { uuid: U1, spec: { adapters: [5], domains: [4] } })
  const doc = {
    masks: { apmask: '-6,-7', aqmask: '-1,-2,-0x0a' },
    mdevs: [
      { uuid: U2, spec: { adapters: [6, 7], domains: [1, 2, 0x0a] } },
      { uuid: U3, spec: { adapters: [3, 5, 6], domains: [4, 0x47] } },
    ],
  }

  await t.test('the summary of a plan matches its full lists', async (t) => {
    const full = lists(await service.plan('local', doc, 'full'))
    const summary = await service.plan('local', doc)
    t.equal(summary.view, 'summary', 'summary by default')
    t.notOk('operations' in summary, 'no lists in the summary view')
    t.same(summary.summary, full.summary, 'the same summary in both views')
    t.same(full.summary, summarizePlan(full), 'the summary is of the lists answered with it')
    const s = full.summary
    t.ok(
      full.claimedApqns.length > 6 && full.violations.length > 0 && full.drainedQueues.length > 0 && full.filteredAdapters.length > 0,
      'a plan with every list',
    )
    t.equal(s.operationCount, full.operations.length)
    t.equal(
      s.operations.reduce((n, k) => n + k.count, 0),
      full.operations.length,
      'the per-kind counts add up to every operation',
    )
    for (const k of s.operations) {
      const ops = full.operations.filter((o) => o.kind === k.kind)
      t.equal(k.count, ops.length, `${k.kind}: count`)
      const devices = new Set(ops.flatMap((o) => ('uuid' in o ? [o.uuid] : [])))
      t.equal(k.deviceCount, devices.size, `${k.kind}: devices`)
      coversExactly(t, k.apqns, [...new Set(ops.flatMap((o) => ('apqns' in o ? o.apqns : 'apqn' in o ? [o.apqn] : [])))], k.kind)
    }
    t.same(
      s.operations.map((k) => k.kind),
      [...new Set(full.operations.map((o) => o.kind))],
      'kinds in plan order',
    )
    t.equal(s.violations.count, full.violations.length)
    t.same(s.violations.first, full.violations.slice(0, SUMMARY_FIRST))
    coversExactly(
      t,
      s.claimedApqns,
      full.claimedApqns.map((c) => c.apqn),
      'claimedApqns',
    )
    t.equal(
      s.claimedApqns.byOwner.reduce((n, o) => n + o.count, 0),
      full.claimedApqns.length,
      'claimed APQNs by owner add up',
    )
    for (const o of s.claimedApqns.byOwner) {
      t.equal(o.count, full.claimedApqns.filter((c) => c.currentOwner === o.currentOwner).length, `owner ${o.currentOwner}`)
    }
    t.ok(s.claimedApqns.byOwner.length >= 2, 'APQNs of several current owners are claimed')
    coversExactly(t, s.drainedQueues, full.drainedQueues, 'drainedQueues')
    t.equal(s.filteredAdapters.count, full.filteredAdapters.length)
    t.same(s.filteredAdapters.first, full.filteredAdapters.slice(0, SUMMARY_FIRST))
    t.equal(s.deferred.count, full.deferred.length)
  })

  await t.test('dry runs and apply answer the summary unless the full view is asked for', async (t) => {
    const dry = await service.applyDesired('local', { masks: { apmask: '-6' }, mdevs: [{ uuid: U2, spec: { adapters: [6], domains: [1] } }] }, { dryRun: true })
    if (!dry.dryRun) return t.fail('a dry run')
    t.equal(dry.plan.view, 'summary')
    const dryFull = await service.applyDesired(
      'local',
      { masks: { apmask: '-6' }, mdevs: [{ uuid: U2, spec: { adapters: [6], domains: [1] } }] },
      { dryRun: true, planView: 'full' },
    )
    if (!dryFull.dryRun) return t.fail('a dry run')
    t.same(dryFull.plan.summary, dry.plan.summary)
    t.equal(lists(dryFull.plan).claimedApqns.length, dry.plan.summary.claimedApqns.count)
    const applied = await service.applyDesired(
      'local',
      { masks: { apmask: '-6' }, mdevs: [{ uuid: U2, spec: { adapters: [6], domains: [1] } }] },
      { planView: 'full' },
    )
    if (applied.dryRun) return t.fail('not a dry run')
    t.equal(applied.result.plan.view, 'full')
    t.equal(lists(applied.result.plan).operations.length, applied.result.plan.summary.operationCount)
    t.ok(applied.result.plan.summary.operations.some((k) => k.kind === 'createMdev' && k.devices.includes(U2)))
  })
})
