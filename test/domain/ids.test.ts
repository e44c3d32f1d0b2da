import t from 'tap'
import fc from 'fast-check'
import { ApmatrixError } from '../../src/domain/errors.js'
import { formatApqn, formatCard, kstrtoul, normalizeIds, parseApqn, parseApqnName, parseCardName, parseId, qid, simpleStrtoul } from '../../src/domain/ids.js'

t.test('O-10 queue and card names', async (t) => {
  t.equal(formatApqn(5, 4), '05.0004')
  t.equal(formatApqn(0x0a, 0x47), '0a.0047')
  t.equal(formatApqn(255, 255), 'ff.00ff')
  t.equal(formatCard(10), 'card0a')
  t.same(parseApqnName('0a.0047'), { apid: 10, apqi: 0x47 })
  t.equal(parseApqnName('0A.0047'), undefined, 'sysfs names are lowercase, matched exactly')
  t.equal(parseApqnName('5.4'), undefined)
  t.equal(parseApqnName('05.0004 '), undefined)
  t.equal(parseApqnName('05.0100'), undefined, 'APQI above 255')
  t.equal(parseCardName('card0a'), 10)
  t.equal(parseCardName('card0A'), undefined)
  t.same(parseApqn('0A.0047'), { apid: 10, apqi: 0x47 }, 'API input accepts any case')
  t.throws(() => parseApqn('x'), ApmatrixError)
  t.equal(qid(5, 4), 0x0504, 'O-4')
})

t.test('product §2 ids: JSON ints, decimal or 0x strings', async (t) => {
  t.equal(parseId(5, 'a'), 5)
  t.equal(parseId('5', 'a'), 5)
  t.equal(parseId('0x47', 'a'), 0x47)
  t.equal(parseId('0X47', 'a'), 0x47)
  t.equal(parseId('0', 'a'), 0)
  for (const bad of ['', ' 5', '5 ', '-1', -1, 1.5, '05', '1e2', 'abc', null, undefined, {}, [], '0x', true]) {
    t.throws(() => parseId(bad, 'a'), { code: 'INVALID_ARGUMENT' }, `refuses ${JSON.stringify(bad)}`)
  }
  t.throws(() => parseId(256, 'adapters'), { code: 'OUT_OF_RANGE', errno: 'ENODEV' })
  t.throws(() => parseId('64', 'adapters', 63), { code: 'OUT_OF_RANGE' })
  try {
    parseId(300, 'adapters')
  } catch (e) {
    t.match((e as ApmatrixError).violations, [{ rule: 'OUT_OF_RANGE', id: 300, field: 'adapters' }])
  }
  t.same(normalizeIds([5, 1, 5, 3, 1]), [1, 3, 5])
})

t.test('V-6 kstrtoul(s, 0)', async (t) => {
  const ok = (s: string, v: bigint, why = ''): void => {
    t.same(kstrtoul(s), { ok: true, value: v }, `${JSON.stringify(s)} = ${v} ${why}`)
  }
  const err = (s: string, errno: 'EINVAL' | 'ERANGE', why = ''): void => {
    t.same(kstrtoul(s), { ok: false, errno }, `${JSON.stringify(s)} ${errno} ${why}`)
  }
  ok('5', 5n)
  ok('5\n', 5n, 'one trailing newline')
  ok('0', 0n)
  ok('0\n', 0n)
  ok('0x0a', 10n, 'T-24')
  ok('0X0A', 10n, 'uppercase prefix and digits are fine for kstrtoul')
  ok('010', 8n, 'octal')
  ok('+5', 5n, 'lib/kstrtox.c skips one leading +')
  ok('18446744073709551615', 2n ** 64n - 1n, 'ULONG_MAX')
  ok('0xffffffffffffffff', 2n ** 64n - 1n)
  err('08', 'EINVAL', 'T-24 bad octal')
  err('-1', 'EINVAL', 'T-24 sign')
  err('', 'EINVAL', 'empty')
  err('\n', 'EINVAL', 'only a newline')
  err(' 5', 'EINVAL', 'leading space')
  err('5 ', 'EINVAL', 'trailing space')
  err('5\n\n', 'EINVAL', 'two newlines')
  err('++5', 'EINVAL')
  err('+', 'EINVAL')
  err('0x', 'EINVAL', '0x without a hex digit is octal 0 followed by x')
  err('0x\n', 'EINVAL')
  err('0xg', 'EINVAL')
  err('5x', 'EINVAL')
  err('18446744073709551616', 'ERANGE', '2^64')
  err('0x10000000000000000', 'ERANGE')
  err('99999999999999999999999x', 'ERANGE', 'overflow is reported before trailing garbage (kernel order)')
})

t.test('simple_strtoul as used by the relative mask syntax', async (t) => {
  t.same(simpleStrtoul('+010,', 1), { value: 8, end: 4 }, 'octal')
  t.same(simpleStrtoul('08', 0), { value: 0, end: 1 }, 'octal stops at 8')
  t.same(simpleStrtoul('0x1f-', 0), { value: 31, end: 4 })
  t.same(simpleStrtoul('0xg', 0), { value: 0, end: 1 }, '0x without a hex digit: octal 0, x not consumed')
  t.same(simpleStrtoul('x', 0), { value: 0, end: 0 }, 'no digit: end = start')
  t.same(simpleStrtoul('', 0), { value: 0, end: 0 })
  t.same(simpleStrtoul('0x10000000000000001', 0), { value: 1, end: 19 }, 'wraps modulo 2^64 like the kernel')
})

t.test('kstrtoul agrees with a BigInt reference on decimal, hex and octal', async () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 2n ** 70n }), fc.constantFrom(10, 16, 8), fc.boolean(), (v, base, nl) => {
      const digits = v.toString(base)
      const s = (base === 16 ? '0x' : base === 8 ? '0' : '') + digits + (nl ? '\n' : '')
      const r = kstrtoul(s)
      if (v > 2n ** 64n - 1n) return !r.ok && r.errno === 'ERANGE'
      return r.ok && r.value === v
    }),
    { numRuns: 300 },
  )
})
