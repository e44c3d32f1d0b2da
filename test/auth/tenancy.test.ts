/**
 * Tenant rules through REST with real tokens (docs/security.md (Tenants)): a tenant creates devices under
 * its own name only, cannot take over or hand away a device, and a refusal that involves another
 * tenant's device says "in use" without naming it (an admin's refusal names it). Mutations are audited
 * with the subject, its roles and the transport.
 */
import t from 'tap'
import { forEachDatabase } from '../store/pg-helper.js'
import { DEVICES, securedFixture, type Subject } from './auth-fixture.js'

forEachDatabase(t, async (t, db) => {
  const fx = await securedFixture(t, db)
  const call = async (s: Subject, method: string, path: string, body?: unknown, type = 'application/json') => {
    const res = await fetch(fx.base + path, {
      method,
      headers: { ...fx.headersOf(s), ...(body !== undefined ? { 'content-type': type } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    const text = await res.text()
    return { status: res.status, text, body: text.startsWith('{') ? JSON.parse(text) : text }
  }
  const B = '/v1/hosts/local/mdevs'
  const theirs = DEVICES['tenant-b'].uuid

  const clash = await call('tenant-a', 'POST', B, { spec: { adapters: [5], domains: [5] } })
  t.equal(clash.status, 409)
  t.equal(clash.body.code, 'APQN_IN_USE')
  t.notMatch(clash.text, theirs, "the other tenant's device is not named")
  t.match(clash.text, /another device/)
  const asAdmin = await call('admin', 'POST', `${B}?dryRun=true`, { spec: { adapters: [5], domains: [5] } })
  t.match(asAdmin.text, theirs, "an admin's refusal names the device")

  const mine = await call('tenant-a', 'POST', B, { spec: { adapters: [6], domains: [5] } })
  t.equal(mine.status, 201, mine.text)
  t.equal(mine.body.metadata.owner, 'tenant-a', "a tenant's device gets its owner name")
  t.equal((await call('tenant-a', 'POST', B, { spec: { adapters: [6], domains: [4] }, owner: 'tenant-b' })).status, 403, 'no device for another tenant')
  const taken = await call('tenant-a', 'POST', B, { uuid: theirs, spec: DEVICES['tenant-b'].spec })
  t.equal(taken.body.code, 'ALREADY_EXISTS', 'a foreign uuid is in use')
  t.notMatch(taken.text, /"spec"/, 'without showing the device')
  const handOver = await call('tenant-a', 'PATCH', `${B}/${mine.body.metadata.uuid}`, { owner: 'tenant-b' }, 'application/merge-patch+json')
  t.equal(handOver.status, 403, 'a tenant cannot hand its device to another tenant')
  t.equal((await call('tenant-b', 'DELETE', `${B}/${mine.body.metadata.uuid}`)).status, 404, "another tenant's delete: NOT_FOUND")

  const audit = await fx.store.audit.list({ target: `hosts/local/mdevs/${mine.body.metadata.uuid}` })
  t.match(
    audit[0],
    { actor: 'rest:token:tenant-a', outcome: 'ok', detail: { subject: 'tenant-a', roles: ['tenant'], auth: 'token' } },
    'the mutation is audited with subject and roles',
  )
  t.equal((await fx.service.getMdev('local', mine.body.metadata.uuid)).metadata.owner, 'tenant-a', 'nothing changed hands')
})
