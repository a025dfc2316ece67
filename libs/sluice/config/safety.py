"""`safety`: where the policy packs are read from."""

from __future__ import annotations

from pydantic import Field

from sluice.config.base import Section


class SafetySettings(Section):
    """The safety service's policy packs (see services/safety/README.md)."""

    # Folder of policy pack files (*.yaml). Empty: the packs shipped with
    # Sluice. A k8s ConfigMap mounted here is picked up without a restart.
    policy_dir: str = ""
    # How often the folder is checked for changed packs, seconds; 0 = never.
    reload_interval_seconds: float = Field(2.0, ge=0)
