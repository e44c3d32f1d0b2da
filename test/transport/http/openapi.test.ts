/**
 * `GET /openapi.json` is a valid OpenAPI 3.0 document, checked by an independent validator
 * (@seriousme/openapi-schema-validator, the OpenAPI Initiative's JSON schemas), and publishes the answers
 * as named component schemas referenced with `$ref`, so a client generator makes one type per resource.
 */
import { Validator } from '@seriousme/openapi-schema-validator'
import t from 'tap'
import { U1 } from '../../service/service-fixture.js'
import { freshDatabase } from '../../store/pg-helper.js'
import { apiFixture } from './http-fixture.js'

const C = '#/components/schemas/'

t.test('the served document', async (t) => {
  const api = await apiFixture(t, await freshDatabase(t, 'sqlite'))
  const res = await api.call('GET', '/openapi.json')
  t.equal(res.status, 200)
  const doc = res.body
  t.equal(doc.openapi, '3.0.3')

  t.test('is valid OpenAPI 3.0 (every error listed)', async (t) => {
    const validator = new Validator({ allErrors: true })
    const r = await validator.validate(doc)
    t.equal(validator.version, '3.0')
    t.ok(r.valid, 'valid', { errors: r.errors })
    const text = JSON.stringify(doc)
    for (const keyword of ['propertyNames', 'patternProperties', '$id', 'const']) t.notMatch(text, `"${keyword}"`, `no ${keyword} (not OpenAPI 3.0)`)
  })

  t.test('names the resources as components and references them', async (t) => {
    const schemas = doc.components?.schemas ?? {}
    for (const name of [
      'Mdev',
      'MdevMetadata',
      'MdevSpec',
      'MdevStatus',
      'Condition',
      'MdevPage',
      'Masks',
      'MaskPair',
      'Host',
      'HostList',
      'Adapter',
      'Queue',
      'Domains',
      'BusMdev',
      'Problem',
      'Violation',
      'Plan',
      'PlanOperation',
      'DryRun',
      'ApplyResult',
    ])
      t.ok(schemas[name], `components.schemas.${name}`)
    t.same(schemas.Mdev.properties, { metadata: { $ref: `${C}MdevMetadata` }, spec: { $ref: `${C}MdevSpec` }, status: { $ref: `${C}MdevStatus` } })
    t.same(schemas.MdevStatus.properties.conditions, { type: 'array', items: { $ref: `${C}Condition` } })
    t.same(schemas.Problem.properties.violations, { type: 'array', items: { $ref: `${C}Violation` } })
    t.same(schemas.Plan.properties.violations.items, { $ref: `${C}Violation` })

    const json = (path: string, method: string, status: string) => doc.paths[path][method].responses[status].content['application/json'].schema
    t.same(json('/v1/hosts/{host}/mdevs/{uuid}', 'get', '200'), { $ref: `${C}Mdev` })
    t.same(json('/v1/hosts/{host}/mdevs', 'get', '200'), { $ref: `${C}MdevPage` })
    t.same(json('/v1/hosts/{host}/mdevs', 'post', '201'), { $ref: `${C}Mdev` })
    t.same(json('/v1/hosts/{host}/masks', 'get', '200'), { $ref: `${C}Masks` })
    t.same(json('/v1/hosts/{host}', 'get', '200'), { $ref: `${C}Host` })
    t.same(json('/v1/hosts/{host}/plan', 'post', '200'), { $ref: `${C}Plan` })
    for (const [path, methods] of Object.entries<any>(doc.paths))
      for (const [method, op] of Object.entries<any>(methods)) {
        // The media type the answers really carry (the fuzz run checks every 4xx for it).
        for (const status of ['4XX', '5XX'])
          t.same(op.responses[status]?.content, { 'application/problem+json': { schema: { $ref: `${C}Problem` } } }, `${method} ${path} ${status}`)
      }

    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)].map((m) => m[1]!)
    t.ok(refs.length > 50)
    t.same(
      refs.filter((r) => !r.startsWith(C) || !schemas[r.slice(C.length)]),
      [],
      'every $ref names a component of the document',
    )
  })

  t.test('request bodies are documented with the media types the routes take', async (t) => {
    const types = (path: string, method: string) => Object.keys(doc.paths[path][method].requestBody?.content ?? {})
    t.same(types('/v1/hosts/{host}/mdevs/{uuid}', 'patch'), ['application/merge-patch+json'], 'PATCH takes only a merge patch (else 415)')
    t.same(types('/v1/hosts/{host}/import', 'post'), ['application/json', 'application/xml', 'text/xml'], 'import: mdevctl JSON or node-device XML')
    t.same(types('/v1/hosts/{host}/mdevs/{uuid}', 'put'), ['application/json'])
  })

  t.test('a served answer has exactly the fields its component lists', async (t) => {
    const created = await api.call('POST', '/v1/hosts/local/mdevs', { body: { uuid: U1, spec: { adapters: [], domains: [] }, labels: { team: 'a' } } })
    t.equal(created.status, 201, created.text)
    const schemas = doc.components.schemas
    t.same(Object.keys(created.body).sort(), Object.keys(schemas.Mdev.properties).sort())
    t.same(Object.keys(created.body.metadata).sort(), Object.keys(schemas.MdevMetadata.properties).sort())
    t.same(Object.keys(created.body.spec).sort(), Object.keys(schemas.MdevSpec.properties).sort())
  })

  t.test('label keys stay bounded without propertyNames: the service refuses a long key (400)', async (t) => {
    const r = await api.call('POST', '/v1/hosts/local/mdevs', { body: { spec: {}, labels: { ['k'.repeat(129)]: 'v' } } })
    t.equal(r.status, 400)
    t.equal(r.body.code, 'INVALID_ARGUMENT')
    t.match(r.body.detail, /label keys are 1\.\.128/)
  })
})
