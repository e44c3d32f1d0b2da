/**
 * Quoting untrusted text in messages. Error messages echo parts of the caller's input; they travel in
 * HTTP bodies and in gRPC's `grpc-message` trailer, which grpc-js percent-encodes with `encodeURI`. A
 * message cut with `String.prototype.slice` can end in half a surrogate pair, and `encodeURI` throws on
 * a lone surrogate: so input is cut by code points here, and lone surrogates are replaced (U+FFFD).
 */

/** `String.prototype.toWellFormed` (ES2024; in Node 20's V8, not yet in TypeScript's ES2023 lib). */
export function wellFormed(text: string): string {
  return (text as string & { toWellFormed(): string }).toWellFormed()
}

/**
 * The first `max` code points of `text` (never half a surrogate pair), with `…` appended when something
 * was cut; lone surrogates already in `text` become U+FFFD. Cost is bounded by `max`, not by the input.
 */
export function clip(text: string, max: number): string {
  let i = 0
  for (let n = 0; i < text.length && n < max; n++) i += (text.codePointAt(i) ?? 0) > 0xffff ? 2 : 1
  return wellFormed(i < text.length ? `${text.slice(0, i)}…` : text)
}
