/** The run's schematic: the task graph laid out by ELK (see graph.ts), drawn with React Flow for
 * pan and zoom. Node colours follow the task runs' states as the page receives them live; a node
 * with a task run opens its detail. */

import "@xyflow/react/dist/base.css";

import {
  Background,
  BaseEdge,
  Controls,
  Handle,
  MarkerType,
  Position,
  ReactFlow,
  type Edge,
  type EdgeProps,
  type Node,
  type NodeProps,
} from "@xyflow/react";
import { useEffect, useMemo, useState } from "react";

import type { EdgeSpec, ParameterSpec, TaskRun, TaskSpec } from "../../api/orchestration";
import { STATE_COLORS, stateLabel } from "../orchestration";
import { EmptyState, Spinner } from "../ui";
import { KIND_LABELS, layoutGraph, nodeStates, type GraphEdge, type GraphLayout, type GraphNode, type NodeState } from "./graph";

type TaskNodeData = Record<string, unknown> &
  GraphNode & {
    state: NodeState | undefined;
    onOpen: ((id: string) => void) | null;
    vertical: boolean;
    withStates: boolean;
  };
type TaskFlowNode = Node<TaskNodeData, "task">;
type RoutedFlowEdge = Edge<{ route: GraphEdge } & Record<string, unknown>, "routed">;

function TaskNode({ data }: NodeProps<TaskFlowNode>) {
  const state = data.state;
  const colour = state?.stateType ? STATE_COLORS[state.stateType] : "var(--border-strong)";
  const open = state?.taskRunId && data.onOpen ? data.onOpen : null;
  // A flow's schematic (no run) names each node's kind where a run's shows its state.
  const stateText = !data.withStates
    ? KIND_LABELS[data.kind]
    : state?.stateType
      ? stateLabel(state.stateType, state.stateName)
      : "Not started";
  return (
    <div
      className={`schematic-node schematic-${data.kind}`}
      data-testid="dag-node"
      data-kind={data.kind}
      data-state={state?.stateType ?? ""}
      aria-label={data.key}
      title={`${data.label} · ${KIND_LABELS[data.kind]} · ${stateText}`}
      style={{ width: data.width, height: data.height, ["--state" as string]: colour }}
      role={open ? "button" : "group"}
      tabIndex={open ? 0 : undefined}
      onKeyDown={
        open
          ? (e) => {
              if (e.key === "Enter" || e.key === " ") open(state!.taskRunId!);
            }
          : undefined
      }
    >
      <Handle
        type="target"
        position={data.vertical ? Position.Top : Position.Left}
        isConnectable={false}
        className="schematic-handle"
      />
      <span className="schematic-label">{data.label}</span>
      <span className="schematic-sub">
        {stateText}
        {data.kind === "mapped" && state && state.children > 0 ? ` · ${state.childrenDone}/${state.children}` : ""}
      </span>
      <Handle
        type="source"
        position={data.vertical ? Position.Bottom : Position.Right}
        isConnectable={false}
        className="schematic-handle"
      />
    </div>
  );
}

/** Draws ELK's route as is (React Flow's own edge shapes would ignore the routing around nodes). */
function RoutedEdge({ data, markerEnd }: EdgeProps<RoutedFlowEdge>) {
  const points = data?.route.points ?? [];
  if (points.length < 2) return null;
  const path = points.map((p, i) => `${i === 0 ? "M" : "L"}${p.x},${p.y}`).join(" ");
  return (
    <g data-testid="dag-edge" data-source={data!.route.source} data-target={data!.route.target}>
      <BaseEdge path={path} markerEnd={markerEnd} className={data!.route.mapped ? "schematic-edge-mapped" : undefined} />
    </g>
  );
}

const nodeTypes = { task: TaskNode };

const NARROW = "(max-width: 720px)";

function useNarrow(): boolean {
  const [narrow, setNarrow] = useState(() => window.matchMedia(NARROW).matches);
  useEffect(() => {
    const query = window.matchMedia(NARROW);
    const onChange = () => setNarrow(query.matches);
    query.addEventListener("change", onChange);
    return () => query.removeEventListener("change", onChange);
  }, []);
  return narrow;
}
const edgeTypes = { routed: RoutedEdge };

export function RunSchematic({
  tasks,
  edges,
  parameters,
  taskRuns,
  onOpenTaskRun,
  of = "run",
}: {
  tasks: TaskSpec[];
  edges: EdgeSpec[];
  parameters: ParameterSpec[];
  taskRuns: TaskRun[];
  onOpenTaskRun?: (taskRunId: string) => void;
  /** "flow": a version's DAG without a run (no states, no task runs to open). */
  of?: "run" | "flow";
}) {
  const [layout, setLayout] = useState<GraphLayout | null>(null);
  const [failed, setFailed] = useState(false);
  // On a phone the graph runs top to bottom, so its nodes stay readable in a narrow frame.
  const vertical = useNarrow();
  // The layout depends on the registered graph only; states change colours, not positions.
  const graphKey = JSON.stringify([tasks, edges, parameters, vertical]);
  useEffect(() => {
    let live = true;
    setFailed(false);
    layoutGraph(tasks, edges, parameters, vertical ? "DOWN" : "RIGHT")
      .then((l) => live && setLayout(l))
      .catch(() => live && setFailed(true));
    return () => {
      live = false;
    };
  }, [graphKey]);

  const states = useMemo(() => nodeStates(taskRuns), [taskRuns]);
  const nodes: TaskFlowNode[] = useMemo(
    () =>
      (layout?.nodes ?? []).map((n) => ({
        id: n.key,
        type: "task",
        position: { x: n.x, y: n.y },
        data: { ...n, state: states.get(n.key), onOpen: onOpenTaskRun ?? null, vertical, withStates: of === "run" },
        width: n.width,
        height: n.height,
        draggable: false,
        selectable: false,
        connectable: false,
      })),
    [layout, states, onOpenTaskRun, vertical, of],
  );
  const flowEdges: RoutedFlowEdge[] = useMemo(
    () =>
      (layout?.edges ?? []).map((e) => ({
        id: e.id,
        source: e.source,
        target: e.target,
        type: "routed",
        data: { route: e },
        markerEnd: { type: MarkerType.ArrowClosed, width: 14, height: 14 },
        selectable: false,
      })),
    [layout],
  );

  if (tasks.length === 0) return <EmptyState>This version registered no tasks.</EmptyState>;
  if (failed) return <EmptyState>The schematic could not be laid out.</EmptyState>;
  if (!layout) return <Spinner label="Laying out the schematic…" />;
  return (
    <div className="schematic" data-testid="dag" role="group" aria-label={`Schematic of the ${of}'s tasks`}>
      <div className="schematic-canvas">
        <ReactFlow
          nodes={nodes}
          edges={flowEdges}
          nodeTypes={nodeTypes}
          edgeTypes={edgeTypes}
          fitView
          fitViewOptions={{ padding: 0.08, maxZoom: 1.2 }}
          minZoom={0.2}
          maxZoom={2.5}
          nodesDraggable={false}
          nodesConnectable={false}
          elementsSelectable={false}
          proOptions={{ hideAttribution: true }}
          // Nodes take clicks only through this (React Flow leaves unselectable nodes click-through).
          onNodeClick={(_, node) => {
            const id = node.data.state?.taskRunId;
            if (id && onOpenTaskRun) onOpenTaskRun(id);
          }}
        >
          <Background gap={20} size={1} />
          <Controls showInteractive={false} position="bottom-right" />
        </ReactFlow>
      </div>
      <ul className="schematic-legend" aria-label="Kinds of task">
        {(["task", "mapped", "parameter", "control"] as const).map((k) => (
          <li key={k}>
            <span className={`schematic-swatch schematic-${k}`} aria-hidden="true" /> {KIND_LABELS[k]}
          </li>
        ))}
      </ul>
    </div>
  );
}
