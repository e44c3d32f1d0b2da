/** Pure parts of the client verbs: id lists, durations, range formatting, the SSE reader, tables. */
import t from 'tap'
import fc from 'fast-check'
import { parseDuration } from '../../src/cli/args/duration.js'
import { parseIdList, parseLabels } from '../../src/cli/args/id-list.js'
import { UsageError } from '../../src/cli/command.js'
import { readSse } from '../../src/cli/client/sse.js'
import { formatIds, formatRanges } from '../../src/cli/format/ids.js'
import { renderTable } from '../../src/cli/format/table.js'

t.test('id lists: decimal, 0x hex, ranges, merged and sorted; junk is a usage error', async (t) => {
  t.same(parseIdList('5,6', '--adapters'), [5, 6])
  t.same(parseIdList(['4,0x47', '0X05'], '--domains'), [4, 5, 71])
  t.same(parseIdList('4-7,0x0a-0x0b', '--domains'), [4, 5, 6, 7, 10, 11])
  t.same(parseIdList(undefined, '--domains'), [])
  t.same(parseIdList('255', 'x'), [255])
  for (const bad of ['', '5,', 'x', '256', '-1', '7-4', '0x100', '1.5', '5 6']) {
    t.throws(() => parseIdList(bad, '--adapters'), UsageError, JSON.stringify(bad))
  }
})

t.test('formatRanges inverts parseIdList (property)', async (t) => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 255 }), { maxLength: 60 }), (ids) => {
      const sorted = [...ids].sort((a, b) => a - b)
      const text = formatRanges(sorted)
      return sorted.length === 0 ? text === '-' : JSON.stringify(parseIdList(text, 'x')) === JSON.stringify(sorted)
    }),
  )
  t.equal(formatRanges([0, 1, 2, 3, 5, 7, 8]), '0-3,5,7,8')
  t.equal(formatIds([4, 71]), '4,71 (hex 04,47)', 'the hex the kernel prints (O-10)')
})

t.test('labels and durations', async (t) => {
  t.same(parseLabels(['a=1', 'b=x=y'], '-l'), { a: '1', b: 'x=y' })
  t.throws(() => parseLabels('novalue', '-l'), UsageError)
  t.equal(parseDuration('120s', '--timeout'), 120_000)
  t.equal(parseDuration('500ms', '--timeout'), 500)
  t.equal(parseDuration('2m', '--timeout'), 120_000)
  t.equal(parseDuration('3', '--timeout'), 3000, 'a bare number is seconds')
  for (const bad of ['', '0', '-1s', 'soon', '2d', '1e3']) t.throws(() => parseDuration(bad, '--timeout'), UsageError, JSON.stringify(bad))
})

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder()
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch))
      c.close()
    },
  })
}

t.test('SSE reader: ids, event names, multi-line data, comments, CRLF split across chunks', async (t) => {
  const chunks = [
    'retry: 2000\n: apmatrix events\n\n',
    'id: 7\nevent: MdevDefined\ndata: {"seq":7}\n\n',
    'id: 8\r',
    '\nevent: X\r\ndata: a\r\ndata: b\r\n\r\n',
    ': ping\n\ndata: tail\n\n',
  ]
  const got = []
  for await (const m of readSse(streamOf(chunks))) got.push(m)
  t.same(got, [
    { id: '7', event: 'MdevDefined', data: '{"seq":7}' },
    { id: '8', event: 'X', data: 'a\nb' },
    { id: '8', event: 'message', data: 'tail' },
  ])
})

t.test('tables: aligned columns, no trailing spaces', async (t) => {
  t.equal(
    renderTable(
      ['A', 'BB', 'C'],
      [
        ['xxx', '', 'z'],
        ['y', 'w', ''],
      ],
    ),
    'A    BB  C\nxxx      z\ny    w\n',
  )
})
