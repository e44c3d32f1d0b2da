import t from 'tap'
import fc from 'fast-check'
import { clip, wellFormed } from '../../src/domain/text.js'

t.test('clip cuts by code points, never inside a surrogate pair', async (t) => {
  t.equal(clip(`x${'\u{1F4A5}'.repeat(40)}`, 3), 'x\u{1F4A5}\u{1F4A5}…')
  t.equal(clip('abc', 3), 'abc', 'nothing cut, no ellipsis')
  t.equal(clip('abcd', 3), 'abc…')
  t.equal(clip('a\ud83d', 5), 'a\ufffd', 'a lone surrogate in the input becomes U+FFFD')
  t.equal(clip('', 0), '')
})

t.test('property: clip equals the first max code points of the well-formed input (+ an ellipsis when cut)', async (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 200 }), fc.nat(100), (s, max) => {
      const out = clip(s, max)
      const points = [...wellFormed(s)]
      const expected = points.length > max ? `${points.slice(0, max).join('')}…` : wellFormed(s)
      // grpc-js sends status messages through encodeURI: it must never throw.
      encodeURI(out)
      return out === expected && wellFormed(out) === out
    }),
    { numRuns: 2000 },
  )
  t.pass('2,000 random strings, including lone surrogates')
})
