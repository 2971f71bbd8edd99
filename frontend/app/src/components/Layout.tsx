import { useEffect, useRef, useState, type ReactNode } from "react";
import { Link, NavLink, Navigate, Outlet, useLocation, useParams } from "react-router";

import { roleLabel } from "../api/types";
import { useSession } from "../session";
import { Spinner } from "./ui";

export function Logo() {
  return (
    <Link to="/" className="logo" aria-label="Flowdeck home">
      <svg width="22" height="22" viewBox="0 0 24 24" aria-hidden="true">
        <rect x="2" y="3" width="9" height="7" rx="2" fill="currentColor" opacity="0.9" />
        <rect x="13" y="14" width="9" height="7" rx="2" fill="currentColor" opacity="0.6" />
        <path d="M6.5 10v4.5a3 3 0 0 0 3 3H13" stroke="currentColor" strokeWidth="2" fill="none" />
      </svg>
      <span>Flowdeck</span>
    </Link>
  );
}

/** Centered card for sign-in, sign-up and other pages that do not need a session. */
export function AuthCard({ title, children, footer }: { title: string; children: ReactNode; footer?: ReactNode }) {
  useEffect(() => {
    document.title = `${title} · Flowdeck`;
  }, [title]);
  return (
    <div className="auth-page">
      <SkipLink />
      <div className="auth-brand">
        <Logo />
      </div>
      <main className="auth-card" id="main" tabIndex={-1}>
        <h1>{title}</h1>
        {children}
      </main>
      {footer ? <div className="auth-footer">{footer}</div> : null}
    </div>
  );
}

function WorkspaceSwitcher() {
  const { workspaces } = useSession();
  const { slug } = useParams();
  const [open, setOpen] = useState(false);
  const ref = useRef<HTMLDivElement>(null);
  const location = useLocation();

  useEffect(() => setOpen(false), [location.pathname]);
  useEffect(() => {
    if (!open) return;
    const onClick = (e: MouseEvent) => {
      if (ref.current && !ref.current.contains(e.target as Node)) setOpen(false);
    };
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") setOpen(false);
    };
    document.addEventListener("mousedown", onClick);
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("mousedown", onClick);
      document.removeEventListener("keydown", onKey);
    };
  }, [open]);

  const current = workspaces?.find((w) => w.slug === slug);
  return (
    <div className="switcher" ref={ref}>
      <button
        type="button"
        className="switcher-button"
        aria-haspopup="true"
        aria-expanded={open}
        aria-controls="workspace-menu"
        onClick={() => setOpen((v) => !v)}
      >
        <span className="sr-only">Switch workspace, current: </span>
        <span className="switcher-name">{current ? current.name : "Workspaces"}</span>
        <svg width="12" height="12" viewBox="0 0 12 12" aria-hidden="true">
          <path d="M2 4l4 4 4-4" stroke="currentColor" strokeWidth="1.6" fill="none" />
        </svg>
      </button>
      {open ? (
        <div className="switcher-menu" id="workspace-menu">
          <nav aria-label="Your workspaces">
            <ul>
              {(workspaces ?? []).map((w) => (
                <li key={w.id}>
                  <Link to={`/w/${w.slug}/dashboard`} aria-current={w.slug === slug ? "page" : undefined}>
                    <span className="switcher-item-name">{w.name}</span>
                    <span className="switcher-item-role">{roleLabel(w.viewerRole)}</span>
                  </Link>
                </li>
              ))}
            </ul>
          </nav>
          <Link to="/workspaces/new" className="switcher-create">
            + Create workspace
          </Link>
        </div>
      ) : null}
    </div>
  );
}

function UserMenu() {
  const { user, signOut } = useSession();
  const [busy, setBusy] = useState(false);
  return (
    <div className="user-menu">
      <span className="user-email" title={user?.email}>
        {user?.email}
      </span>
      <Link to="/account" className="btn btn-ghost btn-small">
        Account
      </Link>
      <button
        type="button"
        className="btn btn-ghost btn-small"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          try {
            await signOut(); // the layout then sends the page to the login screen
          } finally {
            setBusy(false);
          }
        }}
      >
        Log out
      </button>
    </div>
  );
}

/** The first thing Tab reaches: jumps past the header to the page's content (``#main``). */
export function SkipLink() {
  return (
    <a
      className="skip-link"
      href="#main"
      onClick={(e) => {
        const target = document.getElementById("main");
        if (!target) return;
        e.preventDefault(); // focus the content without adding "#main" to the URL
        target.focus();
        target.scrollIntoView();
      }}
    >
      Skip to content
    </a>
  );
}

/** Signed-in pages: header with the workspace switcher; sends anonymous visitors to log in. */
export function AppLayout() {
  const { status, error, refresh, signedOut, signedOutTo } = useSession();
  const location = useLocation();
  if (status === "loading") return <FullPageSpinner />;
  if (status === "error") return <FullPageError message={error ?? "Could not reach Flowdeck."} onRetry={() => void refresh()} />;
  if (status === "anonymous") {
    if (signedOut) return <Navigate to={signedOutTo} replace />;
    const next = location.pathname + location.search;
    return <Navigate to={`/account/login?next=${encodeURIComponent(next)}`} replace />;
  }
  return (
    <div className="app">
      <SkipLink />
      <header className="topbar">
        <div className="topbar-inner">
          <Logo />
          <WorkspaceSwitcher />
          <div className="topbar-spacer" />
          <UserMenu />
        </div>
      </header>
      <div id="main" tabIndex={-1} className="main-target">
        <Outlet />
      </div>
    </div>
  );
}

export function FullPageSpinner() {
  return (
    <div className="full-page">
      <Spinner />
    </div>
  );
}

export function FullPageError({ message, onRetry }: { message: string; onRetry?: () => void }) {
  return (
    <div className="full-page">
      <div className="alert alert-error" role="alert">
        <strong className="alert-title">Flowdeck could not load</strong>
        <p>{message}</p>
        {onRetry ? (
          <button type="button" className="btn btn-secondary btn-small" onClick={onRetry}>
            Try again
          </button>
        ) : null}
      </div>
    </div>
  );
}

export function WorkspaceTabs({ slug, manager }: { slug: string; manager: boolean }) {
  const tabs = [
    { to: "dashboard", label: "Dashboard" },
    { to: "flows", label: "Flows" },
    { to: "runs", label: "Runs" },
    { to: "agents", label: "Agents" },
    { to: "concurrency-limits", label: "Concurrency" },
    { to: "alerts", label: "Alerts" },
    { to: "team", label: "Team" },
    { to: "service-accounts", label: "Service accounts" },
    { to: "api-keys", label: "API keys" },
    ...(manager ? [{ to: "audit-log", label: "Audit log" }] : []),
    { to: "billing", label: "Billing" },
    { to: "settings", label: "Settings" },
  ];
  return (
    <nav className="tabs" aria-label="Workspace">
      {tabs.map((t) => (
        <NavLink key={t.to} to={`/w/${slug}/${t.to}`} className={({ isActive }) => (isActive ? "tab active" : "tab")}>
          {t.label}
        </NavLink>
      ))}
    </nav>
  );
}
