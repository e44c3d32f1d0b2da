/**
 * Small parsers with the kernel's C semantics that the sysfs attribute stores use
 * (sscanf `%d`/`%i`, kstrtobool). kstrtoul and the mask syntax live in src/domain/.
 */

/**
 * sscanf(buf, "%d") or "%i" (base 0: `0x` hex, leading `0` octal): skips leading white space, takes an
 * optional sign and at least one digit, ignores whatever follows. Returns undefined when nothing converts.
 */
export function scanInt(s: string, autoBase: boolean): number | undefined {
  let i = 0
  while (i < s.length && /\s/.test(s[i]!)) i++
  let neg = false
  if (s[i] === '+' || s[i] === '-') {
    neg = s[i] === '-'
    i++
  }
  let base = 10
  if (autoBase && s[i] === '0') {
    if ((s[i + 1] === 'x' || s[i + 1] === 'X') && /[0-9a-fA-F]/.test(s[i + 2] ?? '')) {
      base = 16
      i += 2
    } else base = 8
  }
  const start = i
  let v = 0
  for (; i < s.length; i++) {
    const d = parseInt(s[i]!, 16)
    if (Number.isNaN(d) || d >= base) break
    v = Math.min(v * base + d, Number.MAX_SAFE_INTEGER)
  }
  if (i === start) return undefined
  return neg ? -v : v
}

/** The kernel's kstrtobool: y/Y/1/on → true, n/N/0/off → false, else undefined (EINVAL). */
export function kstrtobool(s: string): boolean | undefined {
  const c = s[0]
  if (c === 'y' || c === 'Y' || c === '1') return true
  if (c === 'n' || c === 'N' || c === '0') return false
  if (c === 'o' || c === 'O') {
    const d = s[1]
    if (d === 'n' || d === 'N') return true
    if (d === 'f' || d === 'F') return false
  }
  return undefined
}

/** sysfs_streq-style device name: the written string without one trailing newline. */
export function stripNewline(s: string): string {
  return s.endsWith('\n') ? s.slice(0, -1) : s
}
