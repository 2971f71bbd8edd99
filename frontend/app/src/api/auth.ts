/** django-allauth headless, browser client: https://docs.allauth.org/en/latest/headless/openapi-specification/ */

import { requestJson, statusMessage } from "./http";

const BASE = "/_allauth/browser/v1";

export interface SessionUser {
  id: string | number;
  email: string;
  display: string;
}

export interface Flow {
  id: string;
  is_pending?: boolean;
}

export interface AllauthError {
  code: string;
  message: string;
  param?: string;
}

/** Every outcome of an allauth call, already classified. */
export type AuthResult =
  | { kind: "authenticated"; user: SessionUser }
  | { kind: "pending"; flow: string; flows: Flow[] }
  | { kind: "unauthenticated"; flows: Flow[] }
  | { kind: "ok" }
  | { kind: "error"; errors: AllauthError[]; status: number };

interface AllauthBody {
  status?: number;
  data?: { user?: SessionUser; flows?: Flow[] };
  meta?: { is_authenticated?: boolean };
  errors?: AllauthError[];
}

export class AuthFailure extends Error {
  errors: AllauthError[];
  constructor(errors: AllauthError[]) {
    super(errors.map((e) => e.message).join(" "));
    this.errors = errors;
    this.name = "AuthFailure";
  }
}

function classify(status: number, raw: unknown): AuthResult {
  const body = (raw ?? {}) as AllauthBody;
  if (status === 200) {
    if (body.meta?.is_authenticated && body.data?.user) return { kind: "authenticated", user: body.data.user };
    return { kind: "ok" };
  }
  if (status === 401) {
    const flows = body.data?.flows ?? [];
    const pending = flows.find((f) => f.is_pending);
    if (pending) return { kind: "pending", flow: pending.id, flows };
    return { kind: "unauthenticated", flows };
  }
  if (status === 410) return { kind: "unauthenticated", flows: [] };
  if (body.errors && body.errors.length > 0) return { kind: "error", errors: body.errors, status };
  if (status === 409) {
    return { kind: "error", status, errors: [{ code: "conflict", message: "You are already signed in. Reload the page." }] };
  }
  return { kind: "error", status, errors: [{ code: "http_" + status, message: statusMessage(status) }] };
}

async function call(method: string, path: string, body?: unknown): Promise<AuthResult> {
  const response = await requestJson(method, BASE + path, body);
  return classify(response.status, response.body);
}

export const auth = {
  session: () => call("GET", "/auth/session"),
  login: (email: string, password: string) => call("POST", "/auth/login", { email, password }),
  logout: () => call("DELETE", "/auth/session"),
  signup: (input: { email: string; password: string; workspace_name?: string; invitation?: string }) =>
    call("POST", "/auth/signup", input),
  verifyEmail: (key: string) => call("POST", "/auth/email/verify", { key }),
  /** The address a verification key is for (without using the key up), or null. */
  verificationEmail: async (key: string): Promise<string | null> => {
    try {
      const response = await fetch(`${BASE}/auth/email/verify`, {
        headers: { Accept: "application/json", "X-Email-Verification-Key": key },
        credentials: "same-origin",
      });
      if (!response.ok) return null;
      const body = (await response.json()) as { data?: { email?: string } };
      return body.data?.email ?? null;
    } catch {
      return null;
    }
  },
  requestPasswordReset: (email: string) => call("POST", "/auth/password/request", { email }),
  resetPassword: (key: string, password: string) => call("POST", "/auth/password/reset", { key, password }),
  /** Change the password of the signed-in person: this session stays signed in, every other one ends. */
  changePassword: (currentPassword: string, newPassword: string) =>
    call("POST", "/account/password/change", { current_password: currentPassword, new_password: newPassword }),
};

/** Messages of an error result, grouped by field ("" for the form as a whole). */
export function errorsByField(errors: AllauthError[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const e of errors) {
    const key = e.param ?? "";
    (out[key] ??= []).push(e.message);
  }
  return out;
}
