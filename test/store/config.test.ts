import t from 'tap'
import path from 'node:path'
import { DEFAULT_DATABASE_URL, parseDatabaseUrl, redact } from '../../src/store/config.js'
import { decodePageToken, encodePageToken, pageSize } from '../../src/store/page-token.js'
import { postgresRequired } from './pg-helper.js'

t.test('DATABASE_URL parsing', async (t) => {
  t.same(parseDatabaseUrl('file:./data/x.db'), { provider: 'sqlite', url: 'file:./data/x.db', file: path.resolve('data/x.db') })
  t.same(parseDatabaseUrl('file:/var/lib/a.db?mode=rwc'), { provider: 'sqlite', url: 'file:/var/lib/a.db', file: '/var/lib/a.db' })
  t.equal(parseDatabaseUrl('file:///var/lib/a.db').file, '/var/lib/a.db')
  t.equal(parseDatabaseUrl('file::memory:').file, ':memory:')
  t.same(parseDatabaseUrl('postgresql://u:p@db:5432/apmatrix'), { provider: 'postgres', url: 'postgresql://u:p@db:5432/apmatrix' })
  t.equal(parseDatabaseUrl('postgres://db/apmatrix').provider, 'postgres')
  t.equal(DEFAULT_DATABASE_URL, 'file:./data/apmatrix.db')
  for (const bad of ['mysql://x/y', 'data/apmatrix.db', 'file:', 'sqlite:x.db', 'postgresql://[bad']) {
    t.throws(() => parseDatabaseUrl(bad), { code: 'INVALID_ARGUMENT' }, bad)
  }
  t.throws(() => parseDatabaseUrl('mysql://x/y'), /file:PATH \(SQLite\) or postgresql:/, 'the message names the accepted forms')
})

t.test('the default applies when DATABASE_URL is unset or empty', async (t) => {
  const saved = process.env.DATABASE_URL
  t.teardown(() => (saved === undefined ? delete process.env.DATABASE_URL : (process.env.DATABASE_URL = saved)))
  delete process.env.DATABASE_URL
  t.equal(parseDatabaseUrl().file, path.resolve('data/apmatrix.db'))
  process.env.DATABASE_URL = ''
  t.equal(parseDatabaseUrl().provider, 'sqlite')
  process.env.DATABASE_URL = 'postgresql://db/x'
  t.equal(parseDatabaseUrl().provider, 'postgres')
})

t.test('redact hides passwords', async (t) => {
  t.equal(redact('postgresql://u:secret@db/x'), 'postgresql://u:***@db/x')
  t.equal(redact('postgresql://u@db/x'), 'postgresql://u@db/x')
})

t.test('page tokens and sizes', async (t) => {
  t.equal(decodePageToken(encodePageToken('abc')), 'abc')
  t.throws(() => decodePageToken('nope'), { code: 'INVALID_ARGUMENT' })
  t.throws(() => decodePageToken(Buffer.from('{"v":2,"a":"x"}').toString('base64url')), { code: 'INVALID_ARGUMENT' })
  t.equal(pageSize(undefined), 100)
  t.equal(pageSize(500), 500)
  for (const bad of [0, 501, 1.5, -1, NaN]) t.throws(() => pageSize(bad), { code: 'INVALID_ARGUMENT' }, String(bad))
})

t.test('pg-helper: PostgreSQL is required under CI or APMATRIX_REQUIRE_POSTGRES=1', async (t) => {
  const saved = { CI: process.env.CI, REQ: process.env.APMATRIX_REQUIRE_POSTGRES }
  t.teardown(() => {
    for (const [k, v] of [
      ['CI', saved.CI],
      ['APMATRIX_REQUIRE_POSTGRES', saved.REQ],
    ] as const) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  })
  delete process.env.CI
  delete process.env.APMATRIX_REQUIRE_POSTGRES
  t.equal(postgresRequired(), false)
  process.env.CI = 'true'
  t.equal(postgresRequired(), true)
  process.env.CI = 'false'
  t.equal(postgresRequired(), false)
  process.env.APMATRIX_REQUIRE_POSTGRES = '1'
  t.equal(postgresRequired(), true)
})
