import t from 'tap'
import fc from 'fast-check'
import { Mask, MASK_BITS, parseAbsoluteMask, parseMaskWrite, parseRelativeMask, type MaskParse } from '../../src/domain/mask.js'

const ZERO64 = '0'.repeat(64)

function ids(r: MaskParse): number[] | string {
  return r.ok ? r.mask.ids() : r.errno
}

t.test('0.3 / B-20 read format and MSB-first numbering', async (t) => {
  t.equal(Mask.full().toString(), `0x${'f'.repeat(64)}`, 'T-01')
  t.equal(Mask.empty().toString(), `0x${ZERO64}`)
  t.equal(Mask.of([0]).toString(), `0x80${'0'.repeat(62)}`, '0x80 is bit 0')
  t.equal(Mask.of([1]).toString(), `0x40${'0'.repeat(62)}`, '0x40 is bit 1')
  t.equal(Mask.of([255]).toString(), `0x${'0'.repeat(63)}1`)
  t.equal(Mask.of([5]).toString(), `0x04${'0'.repeat(62)}`, 'T-42 APID 5 is 0x04 in the first byte')
  t.equal(Mask.of([4]).toString(), `0x08${'0'.repeat(62)}`)
  t.match(Mask.of([3, 200]).toString(), /^0x[0-9a-f]{64}$/)
  t.same(Mask.of([7, 1, 7]).ids(), [1, 7])
  t.equal(Mask.of([1, 7]).count(), 2)
  t.throws(() => Mask.of([256]), RangeError)
  t.throws(() => Mask.of([-1]), RangeError)
  t.ok(Mask.of([3]).has(3))
  t.notOk(Mask.of([3]).has(4))
  t.notOk(Mask.full().has(256))
  t.same(Mask.range(2, 4).ids(), [2, 3, 4])
  t.same(
    Mask.of([1, 2])
      .minus(Mask.of([2, 3]))
      .ids(),
    [1],
  )
  t.same(
    Mask.of([1, 2])
      .and(Mask.of([2, 3]))
      .ids(),
    [2],
  )
  t.same(
    Mask.of([1, 2])
      .or(Mask.of([2, 3]))
      .ids(),
    [1, 2, 3],
  )
  t.same(Mask.of([1]).with(2).with(1, false).ids(), [2])
  t.ok(Mask.full().isFull())
  t.ok(Mask.empty().isEmpty())
  t.equal(JSON.stringify({ m: Mask.of([0]) }), `{"m":"0x80${'0'.repeat(62)}"}`)
})

t.test('B-21 absolute mode', async (t) => {
  const cur = Mask.of([100])
  t.same(ids(parseMaskWrite('0x41', cur)), [1, 7], 'T-04 0x41 sets bits 1 and 7')
  t.same(ids(parseMaskWrite('0x41\n', cur)), [1, 7], 'one trailing newline')
  t.same(ids(parseMaskWrite('x41', cur)), [1, 7], 'bare x prefix')
  t.same(ids(parseMaskWrite('41', cur)), [1, 7], 'no prefix')
  t.same(ids(parseMaskWrite('0xAB', cur)), ids(parseMaskWrite('0xab', cur)), 'uppercase digits are hex digits (isxdigit)')
  t.equal(ids(parseMaskWrite('0X41', cur)), 'EINVAL', 'T-05 uppercase X')
  t.equal(ids(parseMaskWrite('0x41\n\n', cur)), 'EINVAL', 'two newlines')
  t.equal(ids(parseMaskWrite('0x 41', cur)), 'EINVAL', 'space')
  t.equal(ids(parseMaskWrite(' 0x41', cur)), 'EINVAL', 'leading space')
  t.equal(ids(parseMaskWrite('0x41 ', cur)), 'EINVAL', 'trailing space')
  t.equal(ids(parseMaskWrite('0x0x1', cur)), 'EINVAL', 'a second prefix is not a hex digit')
  t.equal(ids(parseMaskWrite('xx1', cur)), 'EINVAL')
  t.equal(ids(parseMaskWrite('0xg', cur)), 'EINVAL')
  t.equal(ids(parseMaskWrite(`0x${'f'.repeat(65)}`, cur)), 'EINVAL', 'T-10 65 digits')
  t.equal(ids(parseMaskWrite(`0x${'f'.repeat(65)}\n`, cur)), 'EINVAL', '65 digits and newline')
  t.ok(parseMaskWrite(`0x${'f'.repeat(64)}`, cur).ok && (parseMaskWrite(`0x${'f'.repeat(64)}`, cur) as { mask: Mask }).mask.isFull(), '64 digits OK')
  t.same(ids(parseMaskWrite(`0x${'f'.repeat(64)}\n`, cur)), Mask.full().ids(), '64 digits and newline OK')
  for (const zero of ['0x', 'x', '', '\n', '0x\n', 'x\n', '0', '0\n']) {
    t.same(ids(parseMaskWrite(zero, cur)), [], `T-11 ${JSON.stringify(zero)} gives all zeros`)
  }
  t.equal(ids(parseMaskWrite('\n\n', cur)), 'EINVAL', 'two newlines alone')
  t.equal(ids(parseMaskWrite(',', cur)), 'EINVAL', 'comma is not hex')
})

t.test('B-21 relative mode', async (t) => {
  const cur = Mask.of([5, 100])
  t.same(ids(parseMaskWrite('+1', cur)), [1, 5, 100])
  t.same(ids(parseMaskWrite('-5', cur)), [100])
  t.same(
    ids(parseMaskWrite('-5,-6', Mask.full())),
    Mask.full()
      .ids()
      .filter((i) => i !== 5 && i !== 6),
    'T-03',
  )
  t.same(ids(parseMaskWrite('+010', Mask.empty())), [8], 'T-07 +010 is octal 8')
  t.same(ids(parseMaskWrite('+0x10', Mask.empty())), [16], 'hex in relative mode')
  t.same(ids(parseMaskWrite('+0X10', Mask.empty())), [16], 'simple_strtoul takes 0X too')
  t.equal(ids(parseMaskWrite('+08', Mask.empty())), 'EINVAL', '+08: octal 0 then 8 starts no term')
  t.equal(ids(parseMaskWrite('+1,+300', cur)), 'EINVAL', 'T-06 value >= 256')
  t.equal(ids(parseMaskWrite('+256', cur)), 'EINVAL')
  t.same(ids(parseMaskWrite('+255', Mask.empty())), [255])
  t.equal(ids(parseMaskWrite('+1, +2', cur)), 'EINVAL', 'T-08 space')
  t.equal(ids(parseMaskWrite('+1 ', cur)), 'EINVAL', 'trailing space')
  t.equal(ids(parseMaskWrite('-5-3', cur)), 'EINVAL', 'T-09 N > M')
  t.equal(ids(parseMaskWrite('+1,2', cur)), 'EINVAL', 'every term needs its sign')
  t.equal(ids(parseMaskWrite('+', cur)), 'EINVAL', 'missing number')
  t.equal(ids(parseMaskWrite('+1-', cur)), 'EINVAL', 'missing range end')
  t.equal(ids(parseMaskWrite('+1-300', cur)), 'EINVAL', 'range end >= 256')
  t.equal(ids(parseMaskWrite('+x', cur)), 'EINVAL')
  t.same(ids(parseMaskWrite('+3-3', Mask.empty())), [3], 'N = M')
  t.same(
    ids(parseMaskWrite('+0-255,-128', Mask.empty())),
    Mask.full()
      .ids()
      .filter((i) => i !== 128),
    'last term wins',
  )
  t.same(ids(parseMaskWrite('-128,+0-255', Mask.empty())), Mask.full().ids(), 'order matters')
  t.same(ids(parseMaskWrite('+1,,,+2', Mask.empty())), [1, 2], 'repeated commas')
  t.same(ids(parseMaskWrite('+1\n+2\n', Mask.empty())), [1, 2], 'newlines between terms')
  t.same(ids(parseMaskWrite('+1,\n,\n+2,\n\n', Mask.empty())), [1, 2], 'mixed separators, trailing ones too')
  t.same(ids(parseMaskWrite('+0x10-0x12', Mask.empty())), [16, 17, 18])
  t.same(ids(parseMaskWrite('+0x10000000000000001', Mask.empty())), [1], 'simple_strtoul wraps modulo 2^64')
})

t.test('T-64 / B-23 the same write twice gives an equal mask, so the second is a no-op', async (t) => {
  const first = parseMaskWrite('0x80\n', Mask.full())
  t.ok(first.ok)
  const m1 = (first as { mask: Mask }).mask
  const second = parseMaskWrite('0x80\n', m1)
  t.ok(second.ok && second.mask.equals(m1))
  t.same(m1.ids(), [0])
  const rel = parseMaskWrite('+0', m1)
  t.ok(rel.ok && rel.mask.equals(m1), 'a relative write that changes nothing is also equal')
  t.notOk(m1.equals(Mask.of([1])))
})

t.test('B-22 all or nothing: a failed write returns no mask and leaves current untouched', async (t) => {
  const cur = Mask.of([5, 100])
  const before = cur.toString()
  for (const bad of ['+1,+300', '0X41', '-5-3', '+1, +2', `0x${'f'.repeat(65)}`]) {
    t.notOk(parseMaskWrite(bad, cur).ok, bad)
  }
  t.equal(cur.toString(), before)
  t.same(ids(parseRelativeMask('+1,+300', cur)), 'EINVAL')
  t.same(cur.ids(), [5, 100], 'bit 1 of the first term is not set anywhere')
})

// Reference model for relative writes: the grammar of B-21 applied to a Set.
const termArb = fc.record({
  sign: fc.constantFrom('+', '-'),
  a: fc.integer({ min: 0, max: 255 }),
  len: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
  base: fc.constantFrom(10, 16, 8),
  sep: fc.constantFrom(',', '\n', ',,', ',\n'),
})
function num(n: number, base: number): string {
  return base === 16 ? `0x${n.toString(16)}` : base === 8 ? (n === 0 ? '0' : `0${n.toString(8)}`) : String(n)
}

t.test('properties', async (t) => {
  t.test('Mask.of(ids).ids() round-trips', async () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: MASK_BITS - 1 }), { maxLength: 256 }), (xs) => {
        const got = Mask.of(xs).ids()
        return JSON.stringify(got) === JSON.stringify([...xs].sort((a, b) => a - b))
      }),
      { numRuns: 300 },
    )
  })

  t.test('toString -> parseAbsoluteMask round-trips (with or without newline)', async () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.boolean(), (bytes, nl) => {
        const m = Mask.fromBytes(bytes)
        const r = parseAbsoluteMask(m.toString() + (nl ? '\n' : ''))
        return r.ok && r.mask.equals(m)
      }),
      { numRuns: 300 },
    )
  })

  t.test('short absolute strings are padded on the right (MSB-first)', async () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9a-f]{0,64}$/), (hex) => {
        const r = parseAbsoluteMask(`0x${hex}`)
        return r.ok && r.mask.toString() === `0x${hex.padEnd(64, '0')}`
      }),
      { numRuns: 300 },
    )
  })

  t.test('relative parse equals a Set reference model', async () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 255 })), fc.array(termArb, { minLength: 1, maxLength: 8 }), (start, terms) => {
        const model = new Set(start)
        let s = ''
        for (const term of terms) {
          const z = term.len === undefined ? term.a : Math.min(255, term.a + term.len)
          s += term.sign + num(term.a, term.base) + (term.len === undefined ? '' : `-${num(z, term.base)}`) + term.sep
          for (let i = term.a; i <= z; i++) term.sign === '+' ? model.add(i) : model.delete(i)
        }
        const r = parseMaskWrite(s, Mask.of(start))
        return r.ok && JSON.stringify(r.mask.ids()) === JSON.stringify([...model].sort((a, b) => a - b))
      }),
      { numRuns: 300 },
    )
  })

  t.test('any write either parses or fails with EINVAL, and never touches the current mask', async () => {
    const alphabet = fc.constantFrom('+', '-', ',', '\n', ' ', '0', '1', '5', '8', 'f', 'x', 'X', '2', '9')
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.array(alphabet, { maxLength: 20 }), (bytes, chars) => {
        const cur = Mask.fromBytes(bytes)
        const before = cur.toString()
        const r = parseMaskWrite(chars.join(''), cur)
        return cur.toString() === before && (r.ok || r.errno === 'EINVAL')
      }),
      { numRuns: 500 },
    )
  })

  t.test('a bad term anywhere fails the whole relative write (all or nothing)', async () => {
    fc.assert(
      fc.property(
        fc.array(termArb, { maxLength: 4 }),
        fc.constantFrom('+256', '-5-3', '+ 1', '+', '1', '+08', '+1-'),
        fc.array(termArb, { maxLength: 4 }),
        (pre, bad, post) => {
          const render = (ts: typeof pre): string => ts.map((x) => x.sign + num(x.a, x.base) + x.sep).join('')
          // A valid first term keeps the write in relative mode whatever `bad` is.
          const s = `+0,${render(pre)}${bad}${post.length ? `,${render(post)}` : ''}`
          const r = parseMaskWrite(s, Mask.empty())
          return !r.ok
        },
      ),
      { numRuns: 300 },
    )
  })
})
