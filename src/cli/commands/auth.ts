/**
 * `apmatrix auth whoami`: the subject, roles, host limit and tenant name the service sees for these
 * credentials (docs/security.md), from `GET /v1/auth/whoami`; and `apmatrix auth hash-token`, the line a
 * static tokens file holds for a token.
 */
import { CLIENT_OPTIONS, clientContext, clientOptionsHelp } from '../args/client-options.js'
import { withClientErrors } from '../client/report-error.js'
import { type CliCommand, EXIT, UsageError } from '../command.js'
import { tokenDigest } from '../../auth/static-tokens.js'

interface WhoAmI {
  subject: string
  source: string
  roles: string[]
  groups: string[]
  hosts: string[] | null
  tenant: string | null
}

/** The `auth whoami` verb. */
export const authWhoamiCommand: CliCommand = {
  path: ['auth', 'whoami'],
  summary: 'print the subject and roles the service sees for these credentials',
  help: `Usage: apmatrix auth whoami [--token TOKEN] [--cacert FILE] [--cert FILE --key FILE] [--json]

Asks the service who it takes the caller for: the subject (certificate name, JWT subject, static token
name, or local:anonymous-admin when the service runs without authentication), how it was authenticated,
its roles, the hosts they are limited to and the tenant name it manages.

Options:
${clientOptionsHelp({ host: false })}
`,
  options: CLIENT_OPTIONS,
  run: (args, io) =>
    withClientErrors(io, async () => {
      const ctx = clientContext(args, io)
      const me = (await ctx.client.get<WhoAmI>('/v1/auth/whoami')).body
      if (ctx.json) io.stdout.write(`${JSON.stringify(me, null, 2)}\n`)
      else {
        io.stdout.write(
          `subject: ${me.subject}\nauthenticated by: ${me.source}\nroles: ${me.roles.join(', ') || '(none)'}\nhosts: ${me.hosts ? me.hosts.join(', ') : 'all'}\n${me.tenant ? `tenant: ${me.tenant}\n` : ''}`,
        )
      }
      return EXIT.OK
    }),
}

/** The `auth hash-token` verb. */
export const authHashTokenCommand: CliCommand = {
  path: ['auth', 'hash-token'],
  summary: 'print the tokens-file line (name:sha256) of a token read from stdin',
  help: `Usage: apmatrix auth hash-token NAME < token-file

Reads a token from stdin (one line; the trailing newline is dropped) and prints NAME:SHA256HEX, the line
of an APMATRIX_AUTH_TOKENS_FILE that grants it as subject NAME. The token itself is never stored.
`,
  options: {},
  allowPositionals: true,
  async run(args, io) {
    const name = args.positionals[0]
    if (!name || args.positionals.length > 1 || !/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/.test(name))
      throw new UsageError('auth hash-token needs one NAME of [A-Za-z0-9._:@-]')
    let text = ''
    for await (const chunk of io.stdin) text += chunk.toString()
    const token = text.replace(/\r?\n$/, '')
    if (!/^[\x21-\x7e]{16,8192}$/.test(token)) throw new UsageError('the token on stdin must be 16..8192 visible ASCII characters')
    io.stdout.write(`${name}:${tokenDigest(token)}\n`)
    return EXIT.OK
  },
}
