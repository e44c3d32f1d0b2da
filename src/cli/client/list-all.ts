/** Reads every page of a paginated list (docs/api.md (REST): `limit` at most 500, `nextPageToken`). */
import type { Page } from './api-types.js'
import type { RequestOptions, RestClient } from './rest-client.js'

/** Every item of the list at `path`, in server order. Errors as {@link RestClient.request}. */
export async function listAll<T>(client: RestClient, path: string, query: RequestOptions['query'] = {}): Promise<T[]> {
  const items: T[] = []
  let pageToken: string | undefined
  // A server that kept returning a token would loop forever; 10,000 pages of 500 is far above 256x256 queues.
  for (let page = 0; page < 10_000; page++) {
    const { body } = await client.get<Page<T>>(path, { query: { ...query, limit: 500, pageToken } })
    items.push(...body.items)
    pageToken = body.nextPageToken
    if (!pageToken) break
  }
  return items
}
