"""Services meet only through protos: no service imports another's package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "sluice").is_dir())


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_service_imports_another_services_code():
    offenders = []
    for service in SERVICES:
        for path in (ROOT / "services" / service).rglob("*.py"):
            for name in _imports(path):
                parts = name.split(".")
                if (len(parts) >= 2 and parts[0] == "sluice" and parts[1] in SERVICES and parts[1] != service
                        and (len(parts) < 3 or parts[2] != "v1")):
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_generated_code_lives_only_in_libs():
    stray = list((ROOT / "services").rglob("*_pb2*.py"))
    assert not stray, stray


def test_the_call_context_sits_below_rpc_and_telemetry():
    """rpc reads telemetry (metrics, spans) and both read the call context; nothing below
    imports what is above it, so the three never import each other in a circle."""
    libs = ROOT / "libs" / "sluice"
    assert not [n for n in _imports(libs / "call_context.py") if n.startswith(("sluice.rpc", "sluice.telemetry"))]
    upward = [f"{path.relative_to(ROOT)} imports {name}" for path in (libs / "telemetry").rglob("*.py")
              for name in _imports(path) if name.startswith("sluice.rpc")]
    assert not upward, upward


def test_auths_cores_do_not_see_the_redis_client_library():
    """Key checking and quota decisions hear of an outage as the ports' StoreUnavailable; redis-py
    stays in the adapters (keystore.py, quota_store.py, tenants.py's TenantStore)."""
    auth = ROOT / "services" / "auth" / "sluice" / "auth"
    leaks = [f"{name} imports {imported}" for name in ("core.py", "quota.py")
             for imported in _imports(auth / name) if imported.split(".")[0] == "redis"]
    assert not leaks, leaks


def test_libs_hold_no_code_in_a_services_namespace():
    """libs/sluice/<service>/ holds only that service's generated contracts (v1/): shared code
    lives in shared packages (config, wire, storage, ...), never under a service's name."""
    stray = [str(p.relative_to(ROOT)) for service in SERVICES
             for p in (ROOT / "libs" / "sluice" / service).rglob("*.py") if "v1" not in p.parts]
    assert not stray, stray


def test_libs_never_reach_into_a_service_by_import_or_by_name():
    """libs/ is below the services: it imports no service's code (generated contracts aside) and
    names none in an import string; the services' command modules register themselves (entry
    points, group sluice.commands) and modules are found from sluice.services' one list."""
    offenders = []
    for path in (ROOT / "libs").rglob("*.py"):
        if "v1" in path.parts:
            continue
        for name in _imports(path) + _string_imports(path):
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == "sluice" and parts[1] in SERVICES and "v1" not in parts:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def _string_imports(path: Path) -> list[str]:
    """Module names given as literal strings to import_module / __import__."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                names.append(node.args[0].value)
    return names


# Sections every process reads, whatever it hosts.
PROCESS_WIDE = {"region", "services", "server", "telemetry"}


def test_each_module_declares_the_settings_sections_it_reads():
    """A module's `sections` names its own section first and every section its package reads
    (outside its command-line tools, which may read any); each is a section of Settings, and
    every section belongs to some module or to every process."""
    import importlib
    import re

    from sluice.config import Settings
    from sluice.services import SERVICES as NAMES
    from sluice.services import module_path

    fields = set(Settings.model_fields)
    declared: set[str] = set()
    for name in NAMES:
        module = importlib.import_module(module_path(name)).MODULE
        assert module.name == name
        assert module.sections[:1] == (name,), f"{name} must declare its own section first"
        assert set(module.sections) <= fields, f"{name} declares unknown sections"
        read = {m for path in (ROOT / "services" / name).rglob("*.py") if path.name != "cli.py"
                for m in re.findall(r"settings\.([a-z_]+)\b", path.read_text())}
        read &= fields
        assert read - PROCESS_WIDE <= set(module.sections), f"{name} reads undeclared {read - set(module.sections)}"
        declared |= set(module.sections)
    assert fields - PROCESS_WIDE <= declared, f"no module reads {fields - PROCESS_WIDE - declared}"
