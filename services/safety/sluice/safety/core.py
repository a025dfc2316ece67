"""Input policy. No policy pack is loaded yet, so every request is allowed
and the verdict names no rule and no pack version: it claims nothing it did
not check. The PII and secret detectors exist (`detectors.py`) but no rule
applies them yet; policy packs, the rule engine and the output filter come
next (issue #5)."""

from __future__ import annotations

from sluice.auth.v1 import principal_pb2
from sluice.llm.v1 import messages_pb2
from sluice.safety.v1 import verdict_pb2


class PassThroughPolicy:
    async def check_input(
        self, principal: principal_pb2.Principal, params: messages_pb2.MessageParams
    ) -> tuple[verdict_pb2.Verdict, messages_pb2.MessageParams | None]:
        return verdict_pb2.Verdict(action=verdict_pb2.ACTION_ALLOW), None
