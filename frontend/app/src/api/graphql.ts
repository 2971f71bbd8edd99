/** A tiny typed GraphQL client for POST /graphql (session cookie + CSRF header). */

import { NetworkError, requestJson, statusMessage } from "./http";

export interface GraphQLErrorItem {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string };
}

/** A request that failed as a whole (HTTP error or errors with no data). */
export class GraphQLRequestError extends Error {
  errors: GraphQLErrorItem[];
  constructor(message: string, errors: GraphQLErrorItem[] = []) {
    super(message);
    this.errors = errors;
    this.name = "GraphQLRequestError";
  }
}

/** A mutation that ran but reported user errors in its payload. */
export interface UserError {
  code: string;
  message: string;
  field: string | null;
}

export class MutationError extends Error {
  errors: UserError[];
  constructor(errors: UserError[]) {
    super(errors.map((e) => e.message).join(" "));
    this.errors = errors;
    this.name = "MutationError";
  }
}

export interface GraphQLResult<T> {
  data: T;
  /** Errors on single fields (e.g. a field the viewer's role may not read); data is still usable. */
  errors: GraphQLErrorItem[];
}

interface Envelope<T> {
  data?: T | null;
  errors?: GraphQLErrorItem[];
}

export async function graphql<T>(query: string, variables: Record<string, unknown> = {}): Promise<GraphQLResult<T>> {
  const response = await requestJson("POST", "/graphql", { query, variables });
  const body = (response.body ?? {}) as Envelope<T>;
  const errors = body.errors ?? [];
  if (body.data === undefined || body.data === null) {
    if (errors.length > 0) throw new GraphQLRequestError(errors.map((e) => e.message).join(" "), errors);
    throw new GraphQLRequestError(statusMessage(response.status));
  }
  return { data: body.data, errors };
}

/** Run a mutation whose single root field returns a payload with `errors`; throw on any error. */
export async function mutate<P extends { errors?: UserError[] | null }>(
  query: string,
  variables: Record<string, unknown>,
  field: string,
): Promise<P> {
  const { data, errors } = await graphql<Record<string, P | null>>(query, variables);
  const payload = data[field];
  if (!payload) {
    throw new GraphQLRequestError(errors.map((e) => e.message).join(" ") || "The server returned no result.", errors);
  }
  if (payload.errors && payload.errors.length > 0) throw new MutationError(payload.errors);
  return payload;
}

/** A message to show a person for any error thrown by the API layer. */
export function errorMessage(error: unknown): string {
  if (error instanceof MutationError || error instanceof GraphQLRequestError || error instanceof NetworkError) {
    return error.message;
  }
  if (error instanceof Error && error.message) return error.message;
  return "Something went wrong. Try again.";
}
