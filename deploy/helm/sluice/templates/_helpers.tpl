{{/*
Names, labels and the per-component facts every template shares.
*/}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name prefix. At most 40 characters: "<fullname>-inference-pods" must stay a DNS label
and a StatefulSet name leaves room for its pods' controller-revision-hash label. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. sluice.dev/region is also on every pod: the ServiceMonitor turns it
into the `region` label of every scraped series. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
sluice.dev/region: {{ .Values.region }}
{{- end -}}

{{/* Selector of one component's pods. Call with (dict "root" $ "component" "auth"). */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's pods: its selector, the version and the region (no chart
version, so a chart-only change does not roll pods). Call with (dict "root" $ "component" name). */}}
{{- define "sluice.podLabels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sluice
sluice.dev/region: {{ .root.Values.region }}
{{- end -}}

{{/* Selector of every pod of the release. */}}
{{- define "sluice.releaseSelector" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest. Call with (dict "image" .Values.image "default" tag). */}}
{{- define "sluice.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .default .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The request-path workloads of the mode, as a JSON list. */}}
{{- define "sluice.requestPath" -}}
{{- if eq .Values.mode "all" -}}
["all"]
{{- else -}}
["gateway", "auth", "safety", "cache", "routing", "inference"]
{{- end -}}
{{- end -}}

{{/* What each workload talks to besides other Sluice services: it gets those credentials and
those NetworkPolicy egress rules, and nothing else. */}}
{{- define "sluice.needs" -}}
all: [redisQuota, redisCache, kafka, keyPepper, upstreams]
gateway: [kafka]
auth: [redisQuota, redisCache, keyPepper]
safety: []
cache: [redisQuota, redisCache]
routing: [redisQuota]
inference: [redisQuota, upstreams]
sinks: [kafka]
{{- end -}}

{{/* Sluice services a workload calls over gRPC (mesh mode). */}}
{{- define "sluice.calls" -}}
gateway: [auth, safety, cache, routing, inference]
{{- end -}}

{{/* A Service's fully qualified DNS name: what Envoy's clusters and Sluice's clients resolve,
independent of the pods' DNS search path. Call with (dict "root" $ "name" "sluice-auth"). */}}
{{- define "sluice.serviceHost" -}}
{{- printf "%s.%s.svc.%s" .name .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/* The service whose services.<name>.grpc address a workload binds (0.0.0.0 in its pod). */}}
{{- define "sluice.primary" -}}
{{- if eq . "all" -}}gateway{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/* Whether the workload's process serves gRPC (the sink only consumes Kafka). */}}
{{- define "sluice.servesGrpc" -}}
{{- if ne . "sinks" -}}true{{- end -}}
{{- end -}}

{{/* Whether the workload serves the gateway (HTTP facade, event spool). */}}
{{- define "sluice.isGateway" -}}
{{- if or (eq . "gateway") (eq . "all") -}}true{{- end -}}
{{- end -}}

{{/* A Redis URL without its password: the ConfigMap's. Call with a redis.<store> value. */}}
{{- define "sluice.redisURL" -}}
{{- printf "%s://%s/%d" (ternary "rediss" "redis" .tls) .address (int .db) -}}
{{- end -}}

{{/* The same URL with the password from the environment variable `var`, which Kubernetes
expands from the Secret when the container starts. Call with (dict "store" ... "var" ...). */}}
{{- define "sluice.redisURLWithPassword" -}}
{{- printf "%s://%s:$(%s)@%s/%d" (ternary "rediss" "redis" .store.tls) .store.username .var .store.address (int .store.db) -}}
{{- end -}}

{{/* The Sluice settings file of the release (libs/sluice/config/settings.py), as YAML. */}}
{{- define "sluice.config" -}}
{{- $fullname := include "sluice.fullname" . -}}
{{- $services := dict -}}
{{- range $name := list "gateway" "auth" "safety" "cache" "routing" "inference" "sinks" -}}
{{- $address := printf "%s:50051" (include "sluice.serviceHost" (dict "root" $ "name" (printf "%s-%s" $fullname $name))) -}}
{{- if or (eq $name "sinks") (eq $.Values.mode "all") -}}
{{- /* Not reached over the network: in-process in mode all; the sink serves no gRPC. */ -}}
{{- $address = "127.0.0.1:50051" -}}
{{- end -}}
{{- $_ := set $services $name (dict "grpc" $address "metrics" "0.0.0.0:9464") -}}
{{- end -}}
{{- $config := dict
  "region" .Values.region
  "services" $services
  "server" (dict "drain_grace_seconds" .Values.drainGraceSeconds)
  "gateway" (dict "http_listen" "0.0.0.0:8080")
  "auth" (dict "redis_url" (include "sluice.redisURL" .Values.redis.quota) "tenants_file" "/etc/sluice/tenants.yaml")
  "cache" (dict "redis_url" (include "sluice.redisURL" .Values.redis.cache))
  "inference" (dict "simulator_url" "")
  "events" (dict "kafka_bootstrap" (join "," .Values.kafka.bootstrapServers) "spool_dir" "/var/lib/sluice/spool")
  "sinks" (dict "data_dir" "/var/lib/sluice/sinks")
-}}
{{- if .Values.safety.policyPacks -}}
{{- $_ := set $config "safety" (dict "policy_dir" "/etc/sluice-policies") -}}
{{- end -}}
{{- /* Every process's traces and alert inputs (the telemetry values; headers come from a Secret
through the environment, see sluice.env). */ -}}
{{- $t := .Values.telemetry -}}
{{- $tracing := dict
  "enabled" $t.tracing.enabled
  "exporter" $t.tracing.exporter
  "endpoint" $t.tracing.endpoint
  "sampling_ratio" $t.tracing.samplingRatio
  "propagate_upstream" $t.tracing.propagateUpstream
  "max_queue_size" (int $t.tracing.maxQueueSize)
-}}
{{- $_ := set $config "telemetry" (dict
  "tracing" $tracing
  "tenant_label" $t.tenantLabel
  "daily_budget_usd" $t.dailyBudgetUsd
  "cost_per_request_target_usd" $t.costPerRequestTargetUsd) -}}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $config) -}}
{{- end -}}

{{/* host:port of telemetry.tracing.endpoint (host:port, or a http:// or https:// URL), without
the scheme and path. */}}
{{- define "sluice.tracingHostPort" -}}
{{- $endpoint := .Values.telemetry.tracing.endpoint -}}
{{- if regexMatch "^[A-Za-z][A-Za-z0-9+.-]*://" $endpoint -}}
{{- (urlParse $endpoint).host -}}
{{- else -}}
{{- $endpoint -}}
{{- end -}}
{{- end -}}

{{/* The collector's host (no port). */}}
{{- define "sluice.tracingHost" -}}
{{- regexReplaceAll ":[0-9]+$" (include "sluice.tracingHostPort" .) "" -}}
{{- end -}}

{{/* The collector pods' port the NetworkPolicy allows: telemetry.tracing.port, else the
endpoint's port, else the scheme's (https 443, http 80). */}}
{{- define "sluice.tracingPort" -}}
{{- $tracing := .Values.telemetry.tracing -}}
{{- $explicit := regexFind "[0-9]+$" (regexFind ":[0-9]+$" (include "sluice.tracingHostPort" .)) -}}
{{- if $tracing.port -}}
{{- int $tracing.port -}}
{{- else if $explicit -}}
{{- $explicit -}}
{{- else if hasPrefix "https://" $tracing.endpoint -}}
443
{{- else if hasPrefix "http://" $tracing.endpoint -}}
80
{{- end -}}
{{- end -}}

{{/* The tenants file (Settings' TenantsFile). */}}
{{- define "sluice.tenants" -}}
{{- toYaml (dict "version" 1 "revision" (int .Values.tenantsRevision) "tenants" .Values.tenants) -}}
{{- end -}}

{{/* Zone and node spread for one component's pods. Call with (dict "root" $ "component" name). */}}
{{- define "sluice.topologySpread" -}}
{{- if .root.Values.topologySpread }}
topologySpreadConstraints:
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "sluice.selectorLabels" (dict "root" $.root "component" $.component) | nindent 8 }}
{{- end }}
{{- end }}
{{- with .root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
