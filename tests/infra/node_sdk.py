"""The official Anthropic TypeScript SDK, driven from Python tests.

Tests check that Sluice serves what the official clients expect, so besides the Python SDK they run
`@anthropic-ai/sdk` under node: `run_ts` hands a command to tests/e2e/ts/client.mjs and returns its
JSON result. The SDK is installed once per machine, outside the checkout, so fresh clones and later
sessions reuse it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

# The newest 1.x release. The 1.x line (1.0.0 came out on 2026-10-21) sends
# `anthropic-version: 2026-10-21`, the API version the Python SDK 2.x speaks too; checked in
# client.mjs of the installed package. It sends `apiKey` (and `authToken`) as
# `Authorization: Bearer <key>`, not `x-api-key`, and passes unknown params through in the body.
TS_SDK_VERSION = "1.14.0"
TS_SDK_API_VERSION = "2026-10-21"

CACHE_ROOT = Path.home() / ".cache" / "sluice" / "npm"
CLIENT_SCRIPT = Path(__file__).resolve().parents[1] / "e2e" / "ts" / "client.mjs"
_PACKAGE = "@anthropic-ai/sdk"


class NodeSdkError(RuntimeError):
    """node or npm is missing, the SDK would not install, or client.mjs failed."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NodeSdkError(
            f"`{name}` is not on PATH: the TypeScript SDK tests need node (>= 18) and npm")
    return path


def _installed(node_modules: Path) -> bool:
    try:
        package = json.loads((node_modules / _PACKAGE / "package.json").read_text())
    except (OSError, ValueError):
        return False
    return package.get("version") == TS_SDK_VERSION


def ensure_ts_sdk() -> Path:
    """Installs `@anthropic-ai/sdk@TS_SDK_VERSION` once per machine; returns its node_modules.

    The install goes to ~/.cache/sluice/npm/anthropic-sdk-<version>/. npm runs in a temporary
    sibling that is renamed into place when complete, so a half-finished install is never used,
    and under an flock so concurrent pytest workers install once.

    Raises NodeSdkError if node or npm is missing or `npm install` fails.
    """
    _tool("node")
    final = CACHE_ROOT / f"anthropic-sdk-{TS_SDK_VERSION}"
    node_modules = final / "node_modules"
    if _installed(node_modules):
        return node_modules
    npm = _tool("npm")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / f".anthropic-sdk-{TS_SDK_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(node_modules):
            return node_modules
        # Holding the lock, anything left over is from an install that died.
        for stale in CACHE_ROOT.glob(f".anthropic-sdk-{TS_SDK_VERSION}.tmp*"):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".anthropic-sdk-{TS_SDK_VERSION}.tmp", dir=CACHE_ROOT))
        tmp.chmod(0o755)
        try:
            done = subprocess.run(
                [npm, "install", "--prefix", str(tmp), "--no-audit", "--no-fund",
                 f"{_PACKAGE}@{TS_SDK_VERSION}"],
                capture_output=True, text=True, timeout=600, cwd=tmp, check=False)
            if done.returncode != 0 or not _installed(tmp / "node_modules"):
                raise NodeSdkError(f"npm install {_PACKAGE}@{TS_SDK_VERSION} failed "
                                   f"(exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return node_modules


def run_ts(base_url: str, api_key: str, command: dict[str, Any], timeout: float = 60
           ) -> dict[str, Any]:
    """Runs one command with the TypeScript SDK against `base_url`; returns client.mjs's result.

    `command` is {"op": ..., "params"?, "query"?, "id"?, "headers"?, "max_retries"? (default 0),
    "auth"? ("api_key" | "bearer" | "x-api-key"), "client_options"?}; ops are create, stream_raw,
    stream, count_tokens, models_list and models_retrieve. The result is {"ok": true, <op's fields>,
    "attempts": [...]} or, for an error the SDK raised (an API error included),
    {"ok": false, "error": {name, status, message, type, error_code, request_id, body, headers},
    "attempts": [...]}. Each attempt is {method, path, query, status, request_headers,
    authorization_scheme, body, response_headers, error}. See tests/e2e/ts/client.mjs.

    Raises NodeSdkError (with the script's stderr) if node exits non-zero, prints no JSON, or runs
    longer than `timeout` seconds.
    """
    node_modules = ensure_ts_sdk()
    # The SDK reads ANTHROPIC_* (keys, base URL, custom headers, workspace...): none may leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["NODE_PATH"] = str(node_modules)
    # ESM import resolution ignores NODE_PATH, so the script imports the SDK by its absolute path.
    env["SLUICE_TS_SDK_ENTRY"] = str(node_modules / _PACKAGE / "index.mjs")
    stdin = json.dumps({**command, "base_url": base_url, "api_key": api_key})
    try:
        done = subprocess.run([_tool("node"), str(CLIENT_SCRIPT)], input=stdin, capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=CLIENT_SCRIPT.parent, check=False)
    except subprocess.TimeoutExpired as e:
        raise NodeSdkError(f"client.mjs {command.get('op')} ran over {timeout}s; stderr:\n"
                           f"{_text(e.stderr)}") from None
    if done.returncode != 0:
        raise NodeSdkError(f"client.mjs {command.get('op')} exited {done.returncode}; stderr:\n"
                           f"{done.stderr}")
    try:
        result = json.loads(done.stdout)
    except ValueError:
        raise NodeSdkError(f"client.mjs {command.get('op')} printed no JSON: {done.stdout!r}; "
                           f"stderr:\n{done.stderr}") from None
    if not isinstance(result, dict):
        raise NodeSdkError(f"client.mjs {command.get('op')} printed {done.stdout!r}")
    return result


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")
