"""Inference service wiring."""

from __future__ import annotations

from sluice.inference.anthropic_upstream import AnthropicUpstream
from sluice.inference.core import Generator, Upstream
from sluice.inference.servicer import InferenceServicer
from sluice.inference.v1 import inference_service_pb2
from sluice.runtime.modules import Module, Runtime


async def init(rt: Runtime) -> None:
    cfg = rt.settings.inference
    upstreams: dict[str, Upstream] = {}
    for name, upstream_cfg in cfg.upstreams.items():
        adapter = AnthropicUpstream(name, upstream_cfg)
        rt.on_stop(adapter.aclose)
        upstreams[name] = adapter
    generator = Generator(upstreams, cfg.retries_per_candidate, cfg.retry_backoff_seconds)
    rt.serve(InferenceServicer(generator), inference_service_pb2.DESCRIPTOR.services_by_name["InferenceService"])


MODULE = Module(name="inference", depends_on=(), init=init)
