import t from 'tap'
import fc from 'fast-check'
import { apqnCount, claimsApqns, crossProduct, formatMatrix, parseMatrix } from '../../src/domain/matrix.js'

t.test('V-19 cross product order: APID-major, ascending', async (t) => {
  t.same(crossProduct([6, 5], [0x47, 4]), [
    { apid: 5, apqi: 4 },
    { apid: 5, apqi: 0x47 },
    { apid: 6, apqi: 4 },
    { apid: 6, apqi: 0x47 },
  ])
  t.same(crossProduct([5, 5], [4]), [{ apid: 5, apqi: 4 }], 'duplicates collapse')
  t.same(crossProduct([5], []), [], 'V-12 empty dimension claims nothing')
  t.same(crossProduct([], [4]), [])
})

t.test('V-12 empty-dimension rule', async (t) => {
  t.notOk(claimsApqns([5], []))
  t.notOk(claimsApqns([], [4]))
  t.notOk(claimsApqns([], []))
  t.ok(claimsApqns([5], [4]))
  t.equal(apqnCount([5, 6], [4, 0x47, 0xab]), 6)
  t.equal(apqnCount([5], []), 0)
})

t.test('V-19 matrix text format', async (t) => {
  t.equal(formatMatrix([5], [4]), '05.0004\n', 'T-18')
  t.equal(formatMatrix([5], []), '05.\n', 'T-19 only adapters')
  t.equal(formatMatrix([], [4]), '.0004\n', 'T-19 only domains')
  t.equal(formatMatrix([], []), '', 'both empty: empty output')
  t.equal(formatMatrix([6, 5], [0x47, 4]), '05.0004\n05.0047\n06.0004\n06.0047\n')
  t.equal(formatMatrix([0x20], [4]), '20.0004\n', 'T-30')
  t.equal(formatMatrix([255], [255]), 'ff.00ff\n')
  t.equal(formatMatrix([5, 10], []), '05.\n0a.\n')
})

t.test('parseMatrix is the strict inverse', async (t) => {
  t.same(parseMatrix(''), { adapters: [], domains: [], apqns: [] })
  t.same(parseMatrix('05.\n'), { adapters: [5], domains: [], apqns: [] })
  t.same(parseMatrix('.0004\n.0047\n'), { adapters: [], domains: [4, 0x47], apqns: [] })
  t.same(parseMatrix('05.0004\n05.0047\n'), {
    adapters: [5],
    domains: [4, 0x47],
    apqns: [
      { apid: 5, apqi: 4 },
      { apid: 5, apqi: 0x47 },
    ],
  })
  const bad = [
    '05.0004', // no final newline
    '05.0004\n\n',
    '5.4\n',
    '05.0004 \n',
    '05.0004\n06.0047\n', // not a cross product
    '05.0047\n05.0004\n', // not ascending
    '05.0004\n05.0004\n', // duplicate
    '05.\n.0004\n', // mixed empty-dimension lines
    '.\n',
    '05.0100\n', // domain above 255
    '05.0004\n05.\n',
    '0A.0004\n', // uppercase
    '\n',
  ]
  for (const text of bad) t.throws(() => parseMatrix(text), { code: 'INVALID_ARGUMENT' }, JSON.stringify(text))
})

t.test('property: parseMatrix(formatMatrix(a, d)) gives back a and d and the cross product', async () => {
  const ids = fc.uniqueArray(fc.integer({ min: 0, max: 255 }), { maxLength: 12 })
  fc.assert(
    fc.property(ids, ids, (a, d) => {
      const text = formatMatrix(a, d)
      const p = parseMatrix(text)
      const sa = [...a].sort((x, y) => x - y)
      const sd = [...d].sort((x, y) => x - y)
      return (
        JSON.stringify(p.adapters) === JSON.stringify(sa) &&
        JSON.stringify(p.domains) === JSON.stringify(sd) &&
        JSON.stringify(p.apqns) === JSON.stringify(crossProduct(a, d)) &&
        text.split('\n').length - 1 === (a.length && d.length ? a.length * d.length : a.length + d.length)
      )
    }),
    { numRuns: 300 },
  )
})
