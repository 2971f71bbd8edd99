"""Where an agent finds a flow's code (Prefect 1's ``prefect.storage``, as references only).

Flowdeck never stores code: registration sends a reference, and the process that runs the flow loads
it with ``load_flow(storage)``:

- ``Module("flows.etl")`` — import the module (installed, or on ``sys.path``) → ``{"type": "module"}``
- ``File("/srv/flows/etl.py")`` (alias ``Local``) — run the script → ``{"type": "file"}``
- ``Git(repo, path, ref)`` — clone the repository, run the file at ``path`` → ``{"type": "git"}``
- ``Docker(image, module=… | path=…)`` — the code is inside the image → ``{"type": "image"}``

The flow is found by name among the module's (or script's) globals.
"""

from __future__ import annotations

import importlib
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowdeck.core.flow import Flow

#: ``__name__`` of a script run by ``load_flow``: not ``__main__``, so ``if __name__ == "__main__":``
#: blocks (``flow.run()`` …) do not run when an agent loads the flow.
SCRIPT_RUN_NAME = "__flowdeck_flow__"


class Storage:
    """Base class: ``serialize(flow_name)`` is the ``storage`` field of the registration metadata."""

    def serialize(self, flow_name: str) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if v is not None)
        return f"{type(self).__name__}({fields})"


class Module(Storage):
    """The flow is a global of an importable module."""

    def __init__(self, module: str) -> None:
        if not module or not all(part.isidentifier() for part in module.split(".")):
            raise ValueError(f"Module storage needs a dotted module name, not {module!r}.")
        self.module = module

    def serialize(self, flow_name: str) -> dict[str, Any]:
        return {"type": "module", "module": self.module, "flow_name": flow_name}


class File(Storage):
    """The flow is a global of a Python script at ``path`` (on the machine that runs it)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        if not self.path:
            raise ValueError("File storage needs a path.")

    def serialize(self, flow_name: str) -> dict[str, Any]:
        return {"type": "file", "path": self.path, "flow_name": flow_name}


class Local(File):
    """Prefect 1 spelling of ``File``: ``Local(path="flows/etl.py")``."""

    def __init__(self, path: str | os.PathLike[str] | None = None, directory: str | None = None) -> None:
        if path is None:
            raise ValueError("Local storage needs the path of the flow's script: Local(path='flows/etl.py').")
        super().__init__(path if directory is None else os.path.join(directory, path))


class Git(Storage):
    """The flow is in the script ``path`` of a Git repository, at ``ref`` (branch, tag or commit)."""

    def __init__(
        self,
        repo: str,
        path: str | None = None,
        ref: str | None = None,
        *,
        flow_path: str | None = None,
        branch_name: str | None = None,
        tag: str | None = None,
        commit: str | None = None,
    ) -> None:
        self.repo = repo
        self.path = path or flow_path
        self.ref = ref or commit or tag or branch_name
        if not repo:
            raise ValueError("Git storage needs the repository URL.")
        if not self.path:
            raise ValueError("Git storage needs the path of the flow's script inside the repository.")

    def serialize(self, flow_name: str) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "git", "repo": self.repo, "path": self.path, "flow_name": flow_name}
        if self.ref:
            data["ref"] = self.ref
        return data


class Docker(Storage):
    """The flow's code is inside a container image, as a module or a script path."""

    def __init__(
        self,
        image: str | None = None,
        *,
        module: str | None = None,
        path: str | None = None,
        registry_url: str | None = None,
        image_name: str | None = None,
        image_tag: str | None = None,
    ) -> None:
        if image is None:
            if not image_name:
                raise ValueError("Docker storage needs an image: Docker('acme/etl:3') or image_name=/image_tag=.")
            image = f"{registry_url.rstrip('/')}/{image_name}" if registry_url else image_name
            image += f":{image_tag}" if image_tag else ""
        self.image = image
        self.module = module
        self.path = path

    def serialize(self, flow_name: str) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "image", "image": self.image, "flow_name": flow_name}
        if self.module:
            data["module"] = self.module
        if self.path:
            data["path"] = self.path
        return data


# --- loading -------------------------------------------------------------------------------------


def _pick_flow(namespace: dict[str, Any], flow_name: str | None, where: str) -> Flow:
    from flowdeck.core.flow import Flow

    flows = [v for v in namespace.values() if isinstance(v, Flow)]
    unique = list({id(f): f for f in flows}.values())
    if flow_name:
        matches = [f for f in unique if f.name == flow_name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(f"{where} defines several flows named {flow_name!r}; give them distinct names.")
        names = ", ".join(repr(f.name) for f in unique) or "none"
        raise ValueError(f"{where} has no flow named {flow_name!r} at module level (flows found: {names}).")
    if len(unique) == 1:
        return unique[0]
    if not unique:
        raise ValueError(f"{where} defines no Flow at module level.")
    names = ", ".join(repr(f.name) for f in unique)
    raise ValueError(f"{where} defines several flows ({names}); the storage must name one (flow_name).")


def _load_module(module: str, flow_name: str | None) -> Flow:
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(
            f"Cannot import the flow's module {module!r}: {exc}. Install the package that contains it, "
            "or start the agent where it is importable (its directory on PYTHONPATH)."
        ) from exc
    return _pick_flow(vars(loaded), flow_name, f"Module {module!r}")


def _load_file(path: str, flow_name: str | None) -> Flow:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"The flow's script {str(file)!r} does not exist on this machine.")
    # The script's own directory is importable while it runs, as with `python script.py`.
    directory = str(file.resolve().parent)
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        namespace = runpy.run_path(str(file), run_name=SCRIPT_RUN_NAME)
    finally:
        if added and directory in sys.path:
            sys.path.remove(directory)
    return _pick_flow(namespace, flow_name, f"Script {str(file)!r}")


def _load_git(repo: str, path: str, ref: str | None, flow_name: str | None, checkout_dir: str | None) -> Flow:
    target = Path(checkout_dir or tempfile.mkdtemp(prefix="flowdeck-git-"))
    clone = ["git", "clone", "--quiet", "--depth", "1"]
    if ref:
        clone += ["--branch", ref]
    done = subprocess.run([*clone, repo, str(target)], capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0 and ref:
        # A commit sha cannot be cloned by --branch: clone fully, then check it out.
        done = subprocess.run(  # noqa: S603
            ["git", "clone", "--quiet", repo, str(target)], capture_output=True, text=True, check=False  # noqa: S607
        )
        if done.returncode == 0:
            done = subprocess.run(  # noqa: S603
                ["git", "-C", str(target), "checkout", "--quiet", ref], capture_output=True, text=True, check=False  # noqa: S607
            )
    if done.returncode != 0:
        raise ValueError(f"Cannot fetch {repo!r}{f' at {ref!r}' if ref else ''}: {done.stderr.strip()}")
    return _load_file(str(target / path), flow_name)


def load_flow(storage: dict[str, Any], *, checkout_dir: str | None = None) -> Flow:
    """The ``Flow`` a storage reference (``flow.serialize()["storage"]``) points to.

    ``module``: imports the module; ``file``: runs the script (with ``__name__`` set to
    ``"__flowdeck_flow__"``, so a ``__main__`` block does not run); ``git``: clones the repository
    (into ``checkout_dir`` or a new temporary directory) and runs the script at ``path``;
    ``image``: (inside the image) imports ``module`` or runs ``path``.
    """
    kind = storage.get("type")
    flow_name = storage.get("flow_name")
    if kind == "module":
        return _load_module(str(storage["module"]), flow_name)
    if kind == "file":
        return _load_file(str(storage["path"]), flow_name)
    if kind == "git":
        return _load_git(str(storage["repo"]), str(storage["path"]), storage.get("ref"), flow_name, checkout_dir)
    if kind == "image":
        if storage.get("module"):
            return _load_module(str(storage["module"]), flow_name)
        if storage.get("path"):
            return _load_file(str(storage["path"]), flow_name)
        raise ValueError("Image storage needs 'module' or 'path' to find the flow inside the image.")
    raise ValueError(f"Unknown storage type {kind!r}: expected module, file, git or image.")


__all__ = ["Storage", "Module", "File", "Local", "Git", "Docker", "load_flow", "SCRIPT_RUN_NAME"]
