/** Structured values live in TEXT columns as JSON (portable across SQLite and PostgreSQL). */
export function toJson(value: unknown): string {
  return JSON.stringify(value ?? null)
}

/** Parses a JSON column; a value that is not valid JSON (never written by the store) yields `fallback`. */
export function fromJson<T>(text: string | null | undefined, fallback: T): T {
  if (text == null || text === '') return fallback
  try {
    return JSON.parse(text) as T
  } catch {
    return fallback
  }
}
