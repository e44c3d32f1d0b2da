/**
 * The syntax of the names and tokens every transport accepts (docs/api.md): one definition, so REST,
 * gRPC and the CLI cannot drift apart. Pure.
 */

/** A managed host's name: 1..63 of `[A-Za-z0-9._-]`, starting alphanumeric (a DNS-label-like name). */
export const HOST_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'
/** {@link HOST_NAME_PATTERN} as a RegExp. */
export const HOST_NAME = new RegExp(HOST_NAME_PATTERN)

/** A caller's `x-request-id` that is kept as it is (anything else is replaced by a fresh uuid). */
export const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** An Idempotency-Key (REST header, gRPC field): 1..128 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/

/** An event kind or type name in a watch filter. */
export const EVENT_NAME = /^[A-Za-z0-9._-]{1,64}$/
