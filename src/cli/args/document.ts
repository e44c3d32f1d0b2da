/** The `-f FILE` document of `plan` and `apply`: a JSON file, or `-` for standard input. */
import fs from 'node:fs/promises'
import { type CliIo, UsageError } from '../command.js'

const MAX_BYTES = 16 * 1024 * 1024

async function readStdin(io: CliIo): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of io.stdin) {
    const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer)
    size += b.length
    if (size > MAX_BYTES) throw new UsageError(`-f -: standard input is larger than ${MAX_BYTES} bytes`)
    chunks.push(b)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * The parsed JSON object of `file`. {@link UsageError} (exit 2) when the option is missing, the file
 * cannot be read, or it is not a JSON object: the server judges the content.
 */
export async function readDocument(file: unknown, io: CliIo): Promise<Record<string, unknown>> {
  if (typeof file !== 'string' || file === '') throw new UsageError('missing -f FILE (a desired-state JSON document, or - for standard input)')
  let text: string
  try {
    text = file === '-' ? await readStdin(io) : await fs.readFile(file, 'utf8')
  } catch (e) {
    if (e instanceof UsageError) throw e
    throw new UsageError(`-f ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (e) {
    throw new UsageError(`-f ${file}: not JSON (${(e as Error).message})`)
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw new UsageError(`-f ${file}: the document must be a JSON object ({masks?, mdevs?, owner?})`)
  return doc as Record<string, unknown>
}

/** Help text of the document format. */
export const DOCUMENT_HELP = `The document is the body of PUT /v1/hosts/{host}/desired (docs/api.md (REST)):
  {"masks": {"apmask": "-5,-6", "aqmask": "-4"},
   "mdevs": [{"uuid": "...", "spec": {"adapters": [5, 6], "domains": [4], "controlDomains": [],
              "state": "started"}, "labels": {}, "owner": "team-a"}],
   "owner": "team-a"}
Ids are integers or decimal/0x strings; masks take every kernel syntax (B-21) or id arrays.`
