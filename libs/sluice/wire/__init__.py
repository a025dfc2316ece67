"""The Anthropic Messages API wire format, in one place, both directions.

Sluice carries the API; it does not re-define it. Requests and stream events
travel as the JSON text the client or the upstream wrote, and every stage
reads typed views through this package:

- `jsontext`: strict parsing, exact spans and splices (edits that leave every
  other byte alone);
- `request`: `MessagesRequest`, the request's views (model, max_tokens,
  texts, cache breakpoints, the token estimate), its field checks, declared
  edits and the upstream body;
- `events`: SSE framing, `Event` and the events Sluice writes itself;
- `assemble`: the whole message from its events (non-streamed answers);
- `typed`: the typed protobuf view for gRPC clients of the public API.
"""
