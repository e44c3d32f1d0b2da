import t from 'tap'
import { toolsRequired, which } from './tools.js'

t.test('the foreign tools are required under CI or APMATRIX_REQUIRE_TOOLS=1, optional elsewhere', async (t) => {
  const saved = { CI: process.env.CI, REQ: process.env.APMATRIX_REQUIRE_TOOLS }
  t.teardown(() => {
    for (const [k, v] of [
      ['CI', saved.CI],
      ['APMATRIX_REQUIRE_TOOLS', saved.REQ],
    ] as const) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  })
  const cases: Array<[string | undefined, string | undefined, boolean]> = [
    [undefined, undefined, false],
    ['', undefined, false],
    ['false', undefined, false],
    ['0', undefined, false],
    ['true', undefined, true],
    ['1', undefined, true],
    [undefined, '1', true],
    [undefined, '0', false],
  ]
  for (const [ci, req, want] of cases) {
    if (ci === undefined) delete process.env.CI
    else process.env.CI = ci
    if (req === undefined) delete process.env.APMATRIX_REQUIRE_TOOLS
    else process.env.APMATRIX_REQUIRE_TOOLS = req
    t.equal(toolsRequired(), want, `CI=${ci} APMATRIX_REQUIRE_TOOLS=${req}`)
  }
  t.equal(which('sh') !== undefined, true)
  t.equal(which('no-such-tool-apmatrix'), undefined)
})
