"""The safety service's decisions: which policy is in force, and applying it.

`PolicyStore` holds the policy in force and swaps it only for one that
validated whole: a bad edit logs every problem (file, rule, field), counts a
rejected reload and leaves the last good policy serving. `SafetyPolicy`
answers CheckInput and FilterOutput with the tenant's profile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from sluice.auth.v1 import principal_pb2
from sluice.llm.v1 import wire_pb2
from sluice.rpc.errors import Reason, SluiceError
from sluice.safety import engine
from sluice.safety.policy import Policy, PolicyError, Profile, fingerprint, load_policy
from sluice.safety.v1 import safety_service_pb2 as pb
from sluice.safety.v1 import verdict_pb2 as v
from sluice.telemetry import metrics
from sluice.wire.events import Event
from sluice.wire.jsontext import pointer
from sluice.wire.request import MessagesRequest

log = logging.getLogger(__name__)

_STAGES = {v.STAGE_INPUT: "input", v.STAGE_OUTPUT: "output"}


class PolicyStore:
    """The policy folder's packs, reloaded when a file changes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seen = fingerprint(folder)
        self.policy = load_policy(folder)  # a bad folder at start is fatal: there is no last good
        self._announce()

    def _announce(self) -> None:
        metrics.SAFETY_POLICY_INFO.clear()
        for version in self.policy.versions:
            metrics.SAFETY_POLICY_INFO.labels(version).set(1)
        log.info("safety policy in force: %s (profiles: %s)", ", ".join(self.policy.versions),
                 ", ".join(self.policy.profile_names))

    def reload_if_changed(self) -> bool:
        """Loads the folder again if a pack file changed; True when a new policy is in force."""
        seen = fingerprint(self.folder)
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            policy = load_policy(self.folder)
        except PolicyError as exc:
            metrics.SAFETY_POLICY_RELOADS.labels("rejected").inc()
            log.error("policy reload rejected; %s stays in force:\n  %s",
                      ", ".join(self.policy.versions), "\n  ".join(exc.problems))
            return False
        self.policy = policy
        metrics.SAFETY_POLICY_RELOADS.labels("ok").inc()
        self._announce()
        return True

    async def watch(self, interval_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                # Loading parses YAML and compiles regexes: off the event loop.
                await asyncio.to_thread(self.reload_if_changed)


def _count(verdict: v.Verdict) -> None:
    stage = _STAGES.get(verdict.stage, "unknown")
    metrics.SAFETY_VERDICTS.labels(stage, v.Action.Name(verdict.action).removeprefix("ACTION_").lower()).inc()
    for hit in verdict.hits:
        metrics.SAFETY_RULE_HITS.labels(stage, hit.rule_id).inc(hit.count)


class SafetyPolicy:
    def __init__(self, store: PolicyStore) -> None:
        self._store = store

    def profile(self, principal: principal_pb2.Principal) -> Profile:
        policy: Policy = self._store.policy
        name = principal.safety_profile or "default"
        profile = policy.profile(name, principal.tenant_id)
        if profile is None:
            raise SluiceError(Reason.POLICY_UNAVAILABLE, f"safety profile {name!r} of tenant "
                              f"{principal.tenant_id} is in no loaded policy pack "
                              f"(profiles: {', '.join(policy.profile_names)})")
        return profile

    def check_input(self, principal: principal_pb2.Principal, request: wire_pb2.WireRequest
                    ) -> pb.CheckInputResponse:
        """The verdict and redactions for a request (CheckInput). Raises
        SluiceError: POLICY_UNAVAILABLE for an unknown profile,
        INVALID_REQUEST for a body that is not a Messages API request."""
        profile = self.profile(principal)
        # Read as a count_tokens body: the texts are what matter here, and
        # max_tokens (which a count_tokens request lacks) is the gateway's to check.
        parsed = MessagesRequest(request.body, request.anthropic_version, tuple(request.anthropic_beta),
                                 count_tokens=True, exact=False)
        verdict, edits = engine.check_input(profile, parsed, principal.country or None)
        _count(verdict)
        return pb.CheckInputResponse(verdict=verdict, filter_output=bool(profile.output_rules),
                                     output_batch_chars=profile.release_chars,
                                     edits=[wire_pb2.TextEdit(pointer=pointer(path), text=text) for path, text in edits])

    async def filter_output(self, requests: AsyncIterator[pb.FilterOutputRequest]
                            ) -> AsyncIterator[pb.FilterOutputResponse]:
        first = await anext(requests, None)
        if first is None or first.WhichOneof("part") != "principal":
            raise SluiceError.bad_request("principal", "the first FilterOutput message must carry the principal")
        output = engine.OutputFilter(self.profile(first.principal))
        batched = False
        async for request in requests:
            part = request.WhichOneof("part")
            if part == "event":
                for event in output.feed(Event(request.event.type, request.event.data)):
                    yield pb.FilterOutputResponse(event=wire_pb2.WireEvent(type=event.type, data=event.data))
            elif part == "events":  # a buffered answer's batch: what it releases goes back as one
                batched = True
                released = []
                for sent in request.events.events:
                    released += output.feed(Event(sent.type, sent.data))
                    if output.stopped:
                        break
                if released:
                    yield pb.FilterOutputResponse(events=_wire(released))
            else:
                raise SluiceError.bad_request("event", "after the principal, FilterOutput takes only events")
            if output.stopped:
                break  # a block rule ended the answer; the caller stops the model
        else:
            held = output.close()
            if batched and held:
                yield pb.FilterOutputResponse(events=_wire(held))
            else:
                for event in held:
                    yield pb.FilterOutputResponse(event=wire_pb2.WireEvent(type=event.type, data=event.data))
        verdict = output.verdict()
        _count(verdict)
        yield pb.FilterOutputResponse(verdict=verdict)


def _wire(events: list[Event]) -> wire_pb2.WireEvents:
    return wire_pb2.WireEvents(events=[wire_pb2.WireEvent(type=e.type, data=e.data) for e in events])
