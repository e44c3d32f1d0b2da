/**
 * Validators and response serializers compile on first use (src/transport/http/lazy-compilers.ts): every
 * one of them must still compile, and a route's first answer must be what the eager compilers gave.
 */
import t from 'tap'
import { buildApp } from '../../../src/transport/http/app.js'
import { compileAllSchemas } from '../../../src/transport/http/lazy-compilers.js'
import { freshDatabase } from '../../store/pg-helper.js'
import { serviceFixture } from '../../service/service-fixture.js'

t.test('every validator and serializer of the API compiles', async (t) => {
  const fx = await serviceFixture(t, await freshDatabase(t, 'sqlite'))
  const app = buildApp({ service: fx.service })
  await app.ready()
  t.teardown(() => app.close())
  const routes = app
    .printRoutes({ commonPrefix: false })
    .split('\n')
    .filter((l) => l.includes('(')).length
  const n = compileAllSchemas(app)
  t.ok(routes >= 25, `${routes} routes`)
  // At least one validator (params, querystring or body) or serializer per route with a schema.
  t.ok(n >= routes, `${n} validators and serializers compiled without an error`)
  t.equal(compileAllSchemas(app), n, 'a second call compiles nothing new (each is kept)')
})

t.test('a lazily compiled route validates and serializes on its first request', async (t) => {
  const fx = await serviceFixture(t, await freshDatabase(t, 'sqlite'))
  const app = buildApp({ service: fx.service })
  await app.ready()
  t.teardown(() => app.close())
  const bad = await app.inject({ method: 'GET', url: '/v1/hosts/local/mdevs?limit=abc' })
  t.equal(bad.statusCode, 400, 'the querystring validator ran on the first request')
  t.equal(bad.json().code, 'INVALID_ARGUMENT')
  const ok = await app.inject({ method: 'GET', url: '/v1/hosts/local' })
  t.equal(ok.statusCode, 200)
  t.equal(ok.json().name, 'local', 'the serializer wrote the answer')
})
