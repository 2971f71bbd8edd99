/** Same-origin JSON requests with Django's CSRF header. */

export function csrfToken(): string {
  const match = document.cookie.split(";").map((c) => c.trim()).find((c) => c.startsWith("csrftoken="));
  return match ? decodeURIComponent(match.slice("csrftoken=".length)) : "";
}

export class NetworkError extends Error {
  constructor() {
    super("Could not reach Flowdeck. Check your connection and try again.");
    this.name = "NetworkError";
  }
}

export interface RawResponse {
  status: number;
  body: unknown;
}

export async function requestJson(method: string, url: string, body?: unknown): Promise<RawResponse> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new NetworkError();
  }
  let parsed: unknown = null;
  const text = await response.text();
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  return { status: response.status, body: parsed };
}

/** A readable message for a response that was neither success nor an expected outcome. */
export function statusMessage(status: number): string {
  if (status === 403) return "The request was refused (403). Reload the page and try again.";
  if (status === 429) return "Too many attempts. Wait a minute and try again.";
  if (status >= 500) return `Flowdeck had a problem (${status}). Try again in a moment.`;
  return `Unexpected response (${status}).`;
}
