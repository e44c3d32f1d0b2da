/**
 * Issue 7 §0, V-3/V-4: a host holds at most `available_instances` + existing matrix devices; the
 * kernel refuses one more with EUSERS. Admission counts every started device (ours and foreign ones)
 * against that limit, so a burst can no longer store devices that end Degraded with EUSERS.
 * The demo host allows 256.
 */
import t from 'tap'
import { forEachDatabase, freshDatabase } from '../store/pg-helper.js'
import { ApmatrixError } from '../../src/domain/errors.js'
import { serviceFixture } from './service-fixture.js'

const uuid = (i: number) => `${i.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`
/** `n` devices with an empty matrix (V-12: they claim no APQN, so only the instance limit applies). */
const empties = (n: number, from = 0, state: 'started' | 'stopped' = 'started') =>
  Array.from({ length: n }, (_, i) => ({ uuid: uuid(from + i), spec: { adapters: [], domains: [], state } }))

forEachDatabase(t, async (t, db) => {
  t.test('a desired state with one started device more than the host holds is refused, naming the limit', async (t) => {
    const { service } = await serviceFixture(t, await freshDatabase(t, db.provider))
    const e = (await service.applyDesired('local', { mdevs: empties(257) }).catch((x) => x)) as ApmatrixError
    t.ok(e instanceof ApmatrixError, 'refused')
    t.equal(e.code, 'INSTANCE_LIMIT')
    t.equal(e.errno, 'EUSERS', 'the errno the kernel would give (V-4)')
    t.match(e.message, /at most 256 matrix devices/)
    t.match(e.violations, [{ rule: 'INSTANCE_LIMIT', id: 256, fix: /stop or delete 1 matrix device\b/ }])
    t.same((await service.listMdevs('local', {})).items, [], 'nothing stored')
  })

  t.test('exactly the limit is admitted; stopped devices do not count; one more POST is refused', async (t) => {
    const { service } = await serviceFixture(t, await freshDatabase(t, db.provider))
    const r = await service.applyDesired('local', { mdevs: [...empties(256), ...empties(3, 1000, 'stopped')] })
    t.notOk(r.dryRun)
    const e = (await service.createMdev('local', { uuid: uuid(5000), spec: { adapters: [], domains: [] } }).catch((x) => x)) as ApmatrixError
    t.equal(e.code, 'INSTANCE_LIMIT', 'the 257th started device')
    const stopped = await service.createMdev('local', { uuid: uuid(5001), spec: { adapters: [], domains: [], state: 'stopped' } })
    t.ok(!stopped.dryRun && stopped.created, 'a stopped definition is still admitted')
  })

  t.test('foreign devices on the bus use instances too', async (t) => {
    const { service, host } = await serviceFixture(t, await freshDatabase(t, db.provider))
    host.host.write('/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create', 'ffffffff-0000-4000-8000-000000000000\n')
    const e = (await service.applyDesired('local', { mdevs: empties(256) }).catch((x) => x)) as ApmatrixError
    t.equal(e.code, 'INSTANCE_LIMIT', '256 of ours + 1 foreign > 256')
    t.match(e.message, /this state starts 257/)
    const ok = await service.applyDesired('local', { mdevs: empties(255) })
    t.notOk(ok.dryRun, '255 + 1 foreign fit')
  })
})
