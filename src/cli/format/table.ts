/** Plain-text tables for people (the `--json` output is for scripts): left-aligned columns, two spaces apart. */

/** Renders `rows` under `headers`; every line ends with a newline, trailing spaces are trimmed. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]) =>
    `${cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()}\n`
  return line(headers) + rows.map(line).join('')
}

/** `key: value` lines with the values aligned (for `mdev get`). */
export function renderFields(fields: readonly (readonly [string, string])[], indent = ''): string {
  const width = Math.max(0, ...fields.map(([k]) => k.length + 1))
  return fields.map(([k, v]) => `${`${indent}${`${k}:`.padEnd(width)}  ${v}`.trimEnd()}\n`).join('')
}
