/** The run's task graph as the schematic draws it: what kind each task is (from the registered
 * task metadata, docs/architecture.md), and a layered layout by ELK whose orthogonal edge routes
 * go around the nodes, never under them. */

import type { ElkExtendedEdge, ElkNode } from "elkjs/lib/elk-api";

import type { EdgeSpec, ParameterSpec, StateType, TaskRun, TaskSpec } from "../../api/orchestration";

export type TaskKind = "task" | "mapped" | "parameter" | "control";

/** Control-flow tasks of the SDK (`switch`/`ifelse`/`merge`): their default names and Merge's trigger. */
const CONTROL_NAME = /^(case\(.*\)|Merge|as_bool)$/;

export function taskKind(task: TaskSpec, parameterNames: Set<string>): TaskKind {
  // Parameters are tasks keyed by their name; a task of that key with no upstream is the parameter.
  if (parameterNames.has(task.key) || parameterNames.has(task.name ?? "")) return "parameter";
  if (CONTROL_NAME.test(task.name ?? "") || task.trigger === "not_all_skipped") return "control";
  if (task.mapped) return "mapped";
  return "task";
}

export const KIND_LABELS: Record<TaskKind, string> = {
  task: "Task",
  mapped: "Mapped task",
  parameter: "Parameter",
  control: "Control flow",
};

export interface GraphNode {
  key: string;
  label: string;
  kind: TaskKind;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  mapped: boolean;
  label: string | null;
  /** The route: start, bends, end (absolute coordinates). */
  points: { x: number; y: number }[];
}

export interface GraphLayout {
  nodes: GraphNode[];
  edges: GraphEdge[];
  width: number;
  height: number;
}

const NODE_HEIGHT = 46;
const CHAR_WIDTH = 7.4;

function nodeWidth(label: string): number {
  return Math.min(260, Math.max(120, Math.round(label.length * CHAR_WIDTH) + 48));
}

type Elk = { layout: (graph: ElkNode) => Promise<ElkNode> };
let elk: Promise<Elk> | null = null;

/** ELK is loaded on first use (it is large, and only the schematic needs it). */
function loadElk(): Promise<Elk> {
  elk ??= import("elkjs/lib/elk.bundled.js").then(({ default: ELK }) => new ELK() as unknown as Elk);
  return elk;
}

export async function layoutGraph(
  tasks: TaskSpec[],
  edges: EdgeSpec[],
  parameters: ParameterSpec[],
  direction: "RIGHT" | "DOWN" = "RIGHT",
): Promise<GraphLayout> {
  const parameterNames = new Set(parameters.map((p) => p.name));
  const keys = new Set(tasks.map((t) => t.key));
  const nodes = tasks.map((t) => {
    const label = t.name || t.key;
    return { key: t.key, label, kind: taskKind(t, parameterNames), width: nodeWidth(label), height: NODE_HEIGHT };
  });
  // One drawn edge per pair of tasks (a task may pass several results to another).
  const seen = new Map<string, EdgeSpec & { id: string }>();
  for (const e of edges) {
    if (!keys.has(e.upstream) || !keys.has(e.downstream)) continue;
    const id = `${e.upstream}->${e.downstream}`;
    if (!seen.has(id)) seen.set(id, { ...e, id });
  }
  const elkEdges: ElkExtendedEdge[] = [...seen.values()].map((e) => ({
    id: e.id,
    sources: [e.upstream],
    targets: [e.downstream],
  }));
  const graph: ElkNode = {
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": direction,
      "elk.edgeRouting": "ORTHOGONAL",
      "elk.layered.spacing.nodeNodeBetweenLayers": "64",
      "elk.spacing.nodeNode": "28",
      "elk.spacing.edgeNode": "18",
      "elk.spacing.edgeEdge": "10",
      "elk.layered.nodePlacement.strategy": "BRANDES_KOEPF",
      "elk.padding": "[top=16,left=16,bottom=16,right=16]",
    },
    children: nodes.map((n) => ({ id: n.key, width: n.width, height: n.height })),
    edges: elkEdges,
  };
  const laid = await (await loadElk()).layout(graph);
  const positions = new Map((laid.children ?? []).map((c) => [c.id, c]));
  const outNodes: GraphNode[] = nodes.map((n) => {
    const p = positions.get(n.key);
    return { ...n, x: p?.x ?? 0, y: p?.y ?? 0 };
  });
  const outEdges: GraphEdge[] = (laid.edges ?? []).map((e) => {
    const spec = seen.get(e.id)!;
    const section = e.sections?.[0];
    const points = section ? [section.startPoint, ...(section.bendPoints ?? []), section.endPoint] : [];
    return {
      id: e.id,
      source: spec.upstream,
      target: spec.downstream,
      mapped: Boolean(spec.mapped),
      label: spec.key ?? null,
      points: points.map((p) => ({ x: p.x, y: p.y })),
    };
  });
  return { nodes: outNodes, edges: outEdges, width: laid.width ?? 0, height: laid.height ?? 0 };
}

/** Each task's state on the schematic: an unmapped task's run, a mapped task's parent run (or,
 * before the parent reports, its first child's), and how many children finished. */
export interface NodeState {
  stateType: StateType | null;
  stateName: string;
  children: number;
  childrenDone: number;
  taskRunId: string | null;
}

const DONE: StateType[] = ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"];

export function nodeStates(taskRuns: TaskRun[]): Map<string, NodeState> {
  const states = new Map<string, NodeState>();
  for (const t of taskRuns) {
    const s = states.get(t.taskKey) ?? { stateType: null, stateName: "", children: 0, childrenDone: 0, taskRunId: null };
    if (t.mapIndex < 0) {
      s.stateType = t.stateType;
      s.stateName = t.stateName;
      s.taskRunId = t.id;
    } else {
      s.children += 1;
      if (DONE.includes(t.stateType)) s.childrenDone += 1;
      if (s.stateType === null) {
        s.stateType = t.stateType;
        s.stateName = t.stateName;
      }
    }
    states.set(t.taskKey, s);
  }
  return states;
}
