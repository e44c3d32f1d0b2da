/** Id lists for people: `0-4,6-255` ranges, with the hex form the kernel prints next to decimal ids. */

/** `[0,1,2,3,5]` → `0-3,5`; `-` for an empty list. */
export function formatRanges(ids: readonly number[]): string {
  if (ids.length === 0) return '-'
  const parts: string[] = []
  let start = ids[0]!
  let prev = start
  for (const id of [...ids.slice(1), NaN]) {
    if (id === prev + 1) {
      prev = id
      continue
    }
    parts.push(start === prev ? `${start}` : prev === start + 1 ? `${start},${prev}` : `${start}-${prev}`)
    start = prev = id
  }
  return parts.join(',')
}

/** Decimal ids with their hex (O-10: sysfs prints APIDs and APQIs in hex): `4,71 (0x04,0x47)`. */
export function formatIds(ids: readonly number[]): string {
  if (ids.length === 0) return '-'
  const dec = formatRanges(ids)
  if (ids.every((i) => i < 10) || ids.length > 16) return dec
  return `${dec} (hex ${ids.map((i) => i.toString(16).padStart(2, '0')).join(',')})`
}

/** An APQN list, or `-`. */
export function formatApqns(apqns: readonly string[] | undefined): string {
  return apqns?.length ? apqns.join(' ') : '-'
}
