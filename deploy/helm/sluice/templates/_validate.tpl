{{/*
Checks run before anything is rendered (templates/validate.yaml). Each problem stops the render
with a message that names the value to fix: a release must not start half right.

Residency: every Kafka and Redis host, and the trace collector's (a trace holds tenant ids and
request ids: it is the region's data too), must carry its region as a DNS label and name no other
region, and every NetworkPolicy peer of those stores and of the collector may name only this
region. A host's
regions are the substrings that look like a cloud region (eu-west-1, us-gov-west-1, ...).
tests/deploy/test_chart.py checks the region values files and the rendered manifests with the
same pattern.
*/}}

{{- define "sluice.regionPattern" -}}
(us|eu|ap|sa|ca|me|af|il|mx|cn)-(gov-)?[a-z]+-[0-9]+
{{- end -}}

{{/* Fails unless `host` names this release's region and no other. Call with
(dict "root" $ "what" "events.kafka_bootstrap" "host" "kafka-0.kafka.eu-west-1.svc"), and
optionally "example" (a host of this region, without the region) and "rule" (what the region's
pods may only use). */}}
{{- define "sluice.checkHostRegion" -}}
{{- $region := .root.Values.region -}}
{{- $example := printf (default "kafka-0.kafka.%s.svc.cluster.local" .example) $region -}}
{{- $rule := default "a region's gateways and sinks may only use that region's Kafka and Redis" .rule -}}
{{- $found := regexFindAll (include "sluice.regionPattern" .root) .host -1 -}}
{{- if not $found -}}
{{- fail (printf "residency: %s host %q names no region; a host that receives the region's data must carry its region as a DNS label (e.g. %s)" .what .host $example) -}}
{{- end -}}
{{- range $found -}}
{{- if ne . $region -}}
{{- fail (printf "residency: %s host %q is in region %s, but this release serves region %s: %s" $.what $.host . $region $rule) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Fails when a Redis URL is not a real server in this region. */}}
{{- define "sluice.checkRedisURL" -}}
{{- if not (regexMatch "^rediss?://" .url) -}}
{{- fail (printf "%s must be a redis:// or rediss:// URL of this region's Redis (memory:// is for make run), got %q" .what .url) -}}
{{- end -}}
{{- $host := (urlParse .url).host -}}
{{- include "sluice.checkHostRegion" (dict "root" .root "what" .what "host" (regexReplaceAll ":[0-9]+$" $host "")) -}}
{{- end -}}

{{/* Fails when a NetworkPolicy peer list of a store names another region. */}}
{{- define "sluice.checkPeersRegion" -}}
{{- range $peer := .peers -}}
{{- range $found := regexFindAll (include "sluice.regionPattern" $.root) (toJson $peer) -1 -}}
{{- if ne $found $.root.Values.region -}}
{{- fail (printf "residency: %s names region %s, but this release serves region %s" $.what $found $.root.Values.region) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Settings the chart derives from dedicated values (or that are secrets, which belong in a
Secret): refused in .Values.config so each has one place. */}}
{{- define "sluice.managedSettings" -}}
region: "set `region`"
services: "derived from the chart's Services"
gateway.http_listen: "fixed at 0.0.0.0:8080"
auth.redis_url: "set redis.quota"
auth.tenants_file: "set `tenants`"
auth.tenants: "set `tenants`"
auth.tenants_revision: "set `tenantsRevision`"
auth.key_pepper: "a secret: set secrets.keyPepper"
auth.admin_tokens: "secrets: set secrets.adminTokens"
auth.seed_keys: "secrets: create keys with `sluice keys create`"
auth.create_demo_key: "not for a deployed region"
cache.redis_url: "set redis.cache"
events.kafka_bootstrap: "set kafka.bootstrapServers"
events.spool_dir: "the gateway's volume"
telemetry: "set `telemetry` (tracing, budgets; the collector's auth header from telemetry.tracing.headersSecret)"
sinks.data_dir: "the sink's volume"
inference.simulator_url: "real providers only; the simulator is for make run and the tests"
server.drain_grace_seconds: "set drainGraceSeconds"
safety.policy_dir: "set safety.policyPacks"
{{- end -}}

{{- define "sluice.validate" -}}
{{- $v := .Values -}}
{{- if not (regexMatch "^[a-z0-9][a-z0-9-]{0,62}$" (toString $v.region)) -}}
{{- fail "region is required: install with -f deploy/helm/regions/<region>.yaml (or --set region=...)" -}}
{{- end -}}
{{- if not (regexMatch (printf "^%s$" (include "sluice.regionPattern" .)) $v.region) -}}
{{- fail (printf "region %q is not a cloud region name such as us-east-1 or eu-west-1 (the residency checks read regions out of host names)" $v.region) -}}
{{- end -}}
{{- if not (has $v.mode (list "all" "mesh")) -}}
{{- fail (printf "mode must be all or mesh, got %q" $v.mode) -}}
{{- end -}}

{{- /* Settings with a dedicated value. */ -}}
{{- range $path, $why := include "sluice.managedSettings" . | fromYaml -}}
{{- $node := $v.config -}}
{{- $parts := splitList "." $path -}}
{{- range $i, $part := $parts -}}
{{- if and (kindIs "map" $node) (hasKey $node $part) -}}
{{- if eq (add1 $i) (len $parts) -}}
{{- fail (printf "config.%s cannot be set here: %s" $path $why) -}}
{{- end -}}
{{- $node = index $node $part -}}
{{- else -}}
{{- $node = dict -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Residency of the data stores. */ -}}
{{- if not $v.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers is required: this region's Kafka (the gateways spool events until it answers; the sink cannot start without it)" -}}
{{- end -}}
{{- range $server := $v.kafka.bootstrapServers -}}
{{- if not (regexMatch "^[A-Za-z0-9_.-]+:[0-9]{1,5}$" $server) -}}
{{- fail (printf "kafka.bootstrapServers: %q is not host:port" $server) -}}
{{- end -}}
{{- include "sluice.checkHostRegion" (dict "root" $ "what" "kafka.bootstrapServers" "host" (regexReplaceAll ":[0-9]+$" $server "")) -}}
{{- end -}}
{{- range $store := list "quota" "cache" -}}
{{- $redis := index $v.redis $store -}}
{{- if not $redis.address -}}
{{- fail (printf "redis.%s.address is required (host:port of this region's %s Redis)" $store $store) -}}
{{- end -}}
{{- include "sluice.checkRedisURL" (dict "root" $ "what" (printf "redis.%s.address" $store) "url" (include "sluice.redisURL" $redis)) -}}
{{- include "sluice.checkPeersRegion" (dict "root" $ "what" (printf "redis.%s.networkPolicyPeers" $store) "peers" $redis.networkPolicyPeers) -}}
{{- if and $redis.passwordSecret.name (not $redis.passwordSecret.key) -}}
{{- fail (printf "redis.%s.passwordSecret.key is required with its name" $store) -}}
{{- end -}}
{{- end -}}
{{- include "sluice.checkPeersRegion" (dict "root" $ "what" "kafka.networkPolicyPeers" "peers" $v.kafka.networkPolicyPeers) -}}
{{- if and $v.networkPolicy.enabled (not $v.kafka.networkPolicyPeers) -}}
{{- fail "kafka.networkPolicyPeers is required with networkPolicy.enabled: the brokers of this region, the only Kafka its gateways and sink may reach" -}}
{{- end -}}
{{- range $store := list "quota" "cache" -}}
{{- if and $v.networkPolicy.enabled (not (index $v.redis $store).networkPolicyPeers) -}}
{{- fail (printf "redis.%s.networkPolicyPeers is required with networkPolicy.enabled" $store) -}}
{{- end -}}
{{- end -}}

{{- /* Traces: an endpoint when enabled, in this region, reachable through the NetworkPolicy. */ -}}
{{- $tracing := $v.telemetry.tracing -}}
{{- if and $tracing.enabled (not $tracing.endpoint) -}}
{{- fail "telemetry.tracing.endpoint is required with telemetry.tracing.enabled: this region's OpenTelemetry collector (otlp_grpc: host:port, e.g. otel-collector.<region>.svc.cluster.local:4317; otlp_http: its traces URL); Sluice's own default (localhost) reaches nothing in a pod" -}}
{{- end -}}
{{- if $tracing.endpoint -}}
{{- if eq $tracing.exporter "otlp_http" -}}
{{- if not (regexMatch "^https?://[A-Za-z0-9_.-]+(:[0-9]{1,5})?(/.*)?$" $tracing.endpoint) -}}
{{- fail (printf "telemetry.tracing.endpoint: %q is not an http:// or https:// URL (otlp_http takes the receiver's traces URL, e.g. http://otel-collector.%s.svc.cluster.local:4318/v1/traces)" $tracing.endpoint $v.region) -}}
{{- end -}}
{{- else if not (regexMatch "^(https?://)?[A-Za-z0-9_.-]+:[0-9]{1,5}/?$" $tracing.endpoint) -}}
{{- fail (printf "telemetry.tracing.endpoint: %q is not host:port or https://host:port (otlp_grpc)" $tracing.endpoint) -}}
{{- end -}}
{{- include "sluice.checkHostRegion" (dict "root" $ "what" "telemetry.tracing.endpoint" "host" (include "sluice.tracingHost" .) "example" "otel-collector.%s.svc.cluster.local" "rule" "a region's traces (tenant ids, request ids) may only go to that region's collector") -}}
{{- end -}}
{{- include "sluice.checkPeersRegion" (dict "root" $ "what" "telemetry.tracing.networkPolicyPeers" "peers" $tracing.networkPolicyPeers) -}}
{{- if and $tracing.enabled $v.networkPolicy.enabled -}}
{{- if not $tracing.networkPolicyPeers -}}
{{- fail "telemetry.tracing.networkPolicyPeers is required with telemetry.tracing.enabled and networkPolicy.enabled: this region's collector, the only place the Sluice pods may export traces to (an egress rule without peers would allow any destination)" -}}
{{- end -}}
{{- end -}}
{{- if and $tracing.headersSecret.name (not $tracing.headersSecret.key) -}}
{{- fail "telemetry.tracing.headersSecret.key is required with its name" -}}
{{- end -}}

{{- /* The final settings, in case .Values.config reached around the checks above. */ -}}
{{- $config := include "sluice.config" . | fromYaml -}}
{{- include "sluice.checkRedisURL" (dict "root" $ "what" "auth.redis_url" "url" $config.auth.redis_url) -}}
{{- include "sluice.checkRedisURL" (dict "root" $ "what" "cache.redis_url" "url" $config.cache.redis_url) -}}

{{- /* Tenants: this region's only. */ -}}
{{- range $id, $tenant := $v.tenants -}}
{{- if ne (toString (dig "region" "" $tenant)) $v.region -}}
{{- fail (printf "tenants.%s: region is %q, but this release serves %s (a tenant is served and billed only in its home region)" $id (toString (dig "region" "" $tenant)) $v.region) -}}
{{- end -}}
{{- end -}}

{{- /* Secrets: referenced, present where required. */ -}}
{{- if not $v.secrets.keyPepper.name -}}
{{- fail "secrets.keyPepper.name is required: the Secret holding auth.key_pepper (the built-in pepper is a development value)" -}}
{{- end -}}
{{- range $name, $ref := dict "secrets.keyPepper" $v.secrets.keyPepper "secrets.adminTokens" $v.secrets.adminTokens "upstreams.anthropic.apiKeySecret" $v.upstreams.anthropic.apiKeySecret "upstreams.vertex.credentialsSecret" $v.upstreams.vertex.credentialsSecret -}}
{{- if and $ref.name (not $ref.key) -}}
{{- fail (printf "%s.key is required with its name" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
