/** Who is signed in (from allauth's session endpoint) and the workspaces they belong to. */

import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";

import { auth, type SessionUser } from "./api/auth";
import { fetchWorkspaces } from "./api/operations";
import type { WorkspaceSummary } from "./api/types";

type Status = "loading" | "anonymous" | "authenticated" | "error";

interface SessionState {
  status: Status;
  user: SessionUser | null;
  error: string | null;
  workspaces: WorkspaceSummary[] | null;
  workspacesError: string | null;
  /** True after the person logged out in this tab (so pages do not ask them to log in "to continue"). */
  signedOut: boolean;
  /** Re-read the session (after login, logout, verification…). */
  refresh: () => Promise<SessionUser | null>;
  /** Re-read the workspace list (after creating, joining or leaving one). */
  reloadWorkspaces: () => Promise<WorkspaceSummary[]>;
  signOut: () => Promise<void>;
  /** Where a signed-out page goes: the login page, with a message after signing out everywhere. */
  signedOutTo: string;
  /** The server has already ended this session (signed out everywhere): forget it here too, and
   * have the signed-in pages send the person to ``to``. */
  forgetSession: (to: string) => void;
}

const SessionContext = createContext<SessionState | null>(null);
const LOGIN_PAGE = "/account/login";

export function SessionProvider({ children }: { children: ReactNode }) {
  const [status, setStatus] = useState<Status>("loading");
  const [user, setUser] = useState<SessionUser | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [workspaces, setWorkspaces] = useState<WorkspaceSummary[] | null>(null);
  const [workspacesError, setWorkspacesError] = useState<string | null>(null);
  const [signedOut, setSignedOut] = useState(false);
  const [signedOutTo, setSignedOutTo] = useState(LOGIN_PAGE);

  const reloadWorkspaces = useCallback(async () => {
    try {
      const list = await fetchWorkspaces();
      setWorkspaces(list);
      setWorkspacesError(null);
      return list;
    } catch (e) {
      setWorkspacesError(e instanceof Error ? e.message : "Could not load your workspaces.");
      setWorkspaces([]);
      return [];
    }
  }, []);

  const refresh = useCallback(async () => {
    try {
      const result = await auth.session();
      if (result.kind === "authenticated") {
        setSignedOut(false);
        setUser(result.user);
        setError(null);
        await reloadWorkspaces();
        setStatus("authenticated");
        return result.user;
      }
      if (result.kind === "error") {
        setError(result.errors.map((e) => e.message).join(" "));
        setStatus("error");
        return null;
      }
      setUser(null);
      setWorkspaces(null);
      setError(null);
      setStatus("anonymous");
      return null;
    } catch (e) {
      setError(e instanceof Error ? e.message : "Could not reach Flowdeck.");
      setStatus("error");
      return null;
    }
  }, [reloadWorkspaces]);

  const signOut = useCallback(async () => {
    await auth.logout();
    setSignedOutTo(LOGIN_PAGE);
    setSignedOut(true);
    setUser(null);
    setWorkspaces(null);
    setStatus("anonymous");
  }, []);

  const forgetSession = useCallback((to: string) => {
    setSignedOutTo(to);
    setSignedOut(true);
    setUser(null);
    setWorkspaces(null);
    setStatus("anonymous");
  }, []);

  useEffect(() => {
    void refresh();
  }, [refresh]);

  const value = useMemo(
    () => ({
      status, user, error, workspaces, workspacesError, signedOut, signedOutTo, refresh, reloadWorkspaces, signOut,
      forgetSession,
    }),
    [
      status, user, error, workspaces, workspacesError, signedOut, signedOutTo, refresh, reloadWorkspaces, signOut,
      forgetSession,
    ],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionState {
  const value = useContext(SessionContext);
  if (!value) throw new Error("useSession outside SessionProvider");
  return value;
}
