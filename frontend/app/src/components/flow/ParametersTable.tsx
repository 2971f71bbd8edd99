/** A version's parameters with their defaults, as registered by the SDK. */

import type { ParameterSpec } from "../../api/orchestration";
import { EmptyState } from "../ui";

function shown(value: unknown): string {
  return value === undefined || value === null ? "—" : JSON.stringify(value);
}

export function ParametersTable({ parameters }: { parameters: ParameterSpec[] }) {
  if (parameters.length === 0) return <EmptyState>This version takes no parameters.</EmptyState>;
  return (
    <table className="table" data-testid="parameters">
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Type</th>
          <th scope="col">Default</th>
          <th scope="col">Required</th>
        </tr>
      </thead>
      <tbody>
        {parameters.map((p) => (
          <tr key={p.name} data-testid="parameter-row">
            <td data-label="Name">
              <code>{p.name}</code>
            </td>
            <td data-label="Type">{p.type ?? "any"}</td>
            <td data-label="Default">
              <code>{shown(p.default)}</code>
            </td>
            <td data-label="Required">{p.required ? "Yes" : "No"}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
