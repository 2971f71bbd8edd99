/** The few REST calls the web app makes (/api/v1/, session cookie + CSRF header) where GraphQL has no
 * mutation: rotating an API key and the task concurrency limits (docs/api.md). */

import { requestJson, statusMessage } from "./http";
import type { ApiKey, Role } from "./types";

/** A REST error answer: `{"error": {"code", "message", "details"}}`. */
export class RestError extends Error {
  code: string;
  status: number;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.name = "RestError";
  }
}

/** A call under `/api/v1/workspaces/{slug}/`; throws a RestError for any non-2xx answer. */
export async function call<T>(method: string, slug: string, path: string, body?: unknown): Promise<T> {
  const response = await requestJson(method, `/api/v1/workspaces/${encodeURIComponent(slug)}/${path}`, body);
  if (response.status >= 200 && response.status < 300) return response.body as T;
  const error = (response.body as { error?: { code?: string; message?: string } } | null)?.error;
  throw new RestError(response.status, error?.code ?? "error", error?.message || statusMessage(response.status));
}

interface RestApiKey {
  id: string;
  name: string;
  kind: string;
  owner: string | null;
  lookup_prefix: string;
  role: Role | null;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
  secret: string;
}

/** Replace a key: the new secret is in this answer only; the old key stops working now, or after
 * `graceSeconds` (at most 7 days) so that whatever uses it can be switched over. */
export async function rotateApiKey(
  slug: string,
  keyId: string,
  graceSeconds: number,
): Promise<{ apiKey: ApiKey; secret: string }> {
  const k = await call<RestApiKey>("POST", slug, `api-keys/${encodeURIComponent(keyId)}/rotate/`, {
    grace_seconds: graceSeconds,
  });
  return {
    secret: k.secret,
    apiKey: {
      id: k.id,
      name: k.name,
      kind: k.kind,
      owner: k.owner,
      lookupPrefix: k.lookup_prefix,
      role: k.role,
      createdAt: k.created_at,
      expiresAt: k.expires_at,
      lastUsedAt: k.last_used_at,
      revokedAt: k.revoked_at,
    },
  };
}

export interface ConcurrencyLimit {
  id: string;
  tag: string;
  limit: number;
  createdAt: string;
}

export async function fetchConcurrencyLimits(slug: string): Promise<ConcurrencyLimit[]> {
  const body = await call<{ results: { id: string; tag: string; limit: number; created_at: string }[] }>(
    "GET",
    slug,
    "concurrency-limits/",
  );
  return body.results.map((r) => ({ id: r.id, tag: r.tag, limit: r.limit, createdAt: r.created_at }));
}

/** Create or change a tag's limit (PUT is an upsert by tag). */
export async function setConcurrencyLimit(slug: string, tag: string, limit: number): Promise<void> {
  await call("PUT", slug, "concurrency-limits/", { tag, limit });
}

export async function deleteConcurrencyLimit(slug: string, tag: string): Promise<void> {
  await call("DELETE", slug, `concurrency-limits/?tag=${encodeURIComponent(tag)}`);
}
