/** The form that creates a project or changes one: name, description and (Owners and Admins only,
 * as the server rules) whether it is restricted to those it is shared with. */

import { useId, useState, type FormEvent } from "react";

import { errorMessage } from "../../api/graphql";
import type { ProjectInput } from "../../api/orchestration";
import { TextField } from "../Field";
import { Alert } from "../ui";

export function ProjectForm({
  initial,
  canRestrict,
  submitLabel,
  onSubmit,
  onCancel,
}: {
  initial: { name: string; description: string; isRestricted: boolean };
  canRestrict: boolean;
  submitLabel: string;
  onSubmit: (input: ProjectInput & { name: string }) => Promise<void>;
  onCancel?: () => void;
}) {
  const [name, setName] = useState(initial.name);
  const [description, setDescription] = useState(initial.description);
  const [restricted, setRestricted] = useState(initial.isRestricted);
  const formId = useId();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onSubmit({ name, description, ...(canRestrict ? { isRestricted: restricted } : {}) });
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
      return;
    }
    setBusy(false);
  };

  return (
    <form onSubmit={submit} className="form project-form" aria-label={submitLabel}>
      <TextField label="Project name" name="name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
      <TextField
        label="Description"
        name="description"
        maxLength={1000}
        value={description}
        onChange={(e) => setDescription(e.target.value)}
      />
      {canRestrict ? (
        <>
          <div className="field checkbox">
            <input
              id={`${formId}-restricted`}
              type="checkbox"
              checked={restricted}
              aria-describedby={`${formId}-restricted-hint`}
              onChange={(e) => setRestricted(e.target.checked)}
            />
            <label htmlFor={`${formId}-restricted`}>Restricted</label>
          </div>
          <p className="hint" id={`${formId}-restricted-hint`}>
            Only Owners, Admins and the people it is shared with see a restricted project and its flows.
          </p>
        </>
      ) : null}
      {error ? <Alert kind="error">{error}</Alert> : null}
      <div className="form-actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Saving…" : submitLabel}
        </button>
        {onCancel ? (
          <button type="button" className="btn btn-ghost" onClick={onCancel} disabled={busy}>
            Cancel
          </button>
        ) : null}
      </div>
    </form>
  );
}
