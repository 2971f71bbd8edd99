import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter, Navigate, Route, Routes } from "react-router";

import { AppLayout } from "./components/Layout";
import { ChannelsPage } from "./pages/alerts/ChannelsPage";
import { IncidentPage } from "./pages/alerts/IncidentPage";
import { IncidentsPage } from "./pages/alerts/IncidentsPage";
import { SlaPoliciesPage } from "./pages/alerts/SlaPoliciesPage";
import { AccountPage } from "./pages/account";
import { AuditLogPage } from "./pages/AuditLogPage";
import {
  LoginPage,
  PasswordResetKeyPage,
  PasswordResetRequestPage,
  SignupPage,
  VerifyEmailPage,
} from "./pages/auth";
import { BillingPage } from "./pages/billing/BillingPage";
import { ApiKeysPage, ServiceAccountsPage } from "./pages/keys";
import { CreateWorkspacePage, HomeRedirect, InvitationPage, NotFoundPage } from "./pages/misc";
import { AgentsPage } from "./pages/orchestration/AgentsPage";
import { ConcurrencyLimitsPage } from "./pages/orchestration/ConcurrencyLimitsPage";
import { DashboardPage } from "./pages/orchestration/DashboardPage";
import { FlowPage } from "./pages/orchestration/FlowPage";
import { FlowsPage } from "./pages/orchestration/FlowsPage";
import { QuickRunPage } from "./pages/orchestration/QuickRunPage";
import { RunPage } from "./pages/orchestration/RunPage";
import { RunsPage } from "./pages/orchestration/RunsPage";
import { SettingsPage } from "./pages/SettingsPage";
import { TeamPage } from "./pages/TeamPage";
import { WorkspaceLayout } from "./pages/WorkspaceLayout";
import { SessionProvider } from "./session";
import "./styles.css";

function App() {
  return (
    <Routes>
      <Route path="/" element={<HomeRedirect />} />
      <Route path="/account/login" element={<LoginPage />} />
      <Route path="/account/signup" element={<SignupPage />} />
      <Route path="/account/verify-email/:key" element={<VerifyEmailPage />} />
      <Route path="/account/password/reset" element={<PasswordResetRequestPage />} />
      <Route path="/account/password/reset/key/:key" element={<PasswordResetKeyPage />} />
      <Route path="/invitations/:token" element={<InvitationPage />} />
      <Route element={<AppLayout />}>
        <Route path="/account" element={<AccountPage />} />
        <Route path="/workspaces/new" element={<CreateWorkspacePage />} />
        <Route path="/w/:slug" element={<WorkspaceLayout />}>
          <Route index element={<Navigate to="dashboard" replace />} />
          <Route path="dashboard" element={<DashboardPage />} />
          <Route path="flows" element={<FlowsPage />} />
          <Route path="flows/:flowId" element={<FlowPage />} />
          <Route path="flows/:flowId/run" element={<QuickRunPage />} />
          <Route path="runs" element={<RunsPage />} />
          <Route path="runs/:runId" element={<RunPage />} />
          <Route path="runs/:runId/tasks/:taskRunId" element={<RunPage />} />
          <Route path="agents" element={<AgentsPage />} />
          <Route path="concurrency-limits" element={<ConcurrencyLimitsPage />} />
          <Route path="alerts" element={<Navigate to="incidents" replace />} />
          <Route path="alerts/incidents" element={<IncidentsPage />} />
          <Route path="alerts/incidents/:incidentId" element={<IncidentPage />} />
          <Route path="alerts/policies" element={<SlaPoliciesPage />} />
          <Route path="alerts/channels" element={<ChannelsPage />} />
          <Route path="team" element={<TeamPage />} />
          <Route path="service-accounts" element={<ServiceAccountsPage />} />
          <Route path="api-keys" element={<ApiKeysPage />} />
          <Route path="audit-log" element={<AuditLogPage />} />
          <Route path="billing" element={<BillingPage />} />
          <Route path="settings" element={<SettingsPage />} />
        </Route>
      </Route>
      <Route path="*" element={<NotFoundPage />} />
    </Routes>
  );
}

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <BrowserRouter>
        <SessionProvider>
          <App />
        </SessionProvider>
      </BrowserRouter>
    </StrictMode>,
  );
}
