{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "animegan.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated to 63 characters (the DNS label limit of Kubernetes names).
A release name that already contains the chart name is used as is.
*/}}
{{- define "animegan.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of a component's resources: <fullname>-<component>, the fullname shortened so the suffix fits.
Usage: include "animegan.componentName" (list . "worker")
*/}}
{{- define "animegan.componentName" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $full := include "animegan.fullname" $root | trunc (int (sub 62 (len $component))) | trimSuffix "-" }}
{{- printf "%s-%s" $full $component }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "animegan.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "animegan.labels" -}}
helm.sh/chart: {{ include "animegan.chart" . }}
{{ include "animegan.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "animegan.name" . }}
{{- end }}

{{/*
Selector labels (stable across upgrades: no version, no helm.sh/chart).
*/}}
{{- define "animegan.selectorLabels" -}}
app.kubernetes.io/name: {{ include "animegan.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels and selector labels of one component. Usage: include "animegan.componentLabels" (list . "api")
*/}}
{{- define "animegan.componentLabels" -}}
{{ include "animegan.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "animegan.componentSelectorLabels" -}}
{{ include "animegan.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
Service account name.
*/}}
{{- define "animegan.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "animegan.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "animegan.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Secret holding the Redis URL, and its key: the user's existingSecret, else the chart's own.
*/}}
{{- define "animegan.redisSecretName" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret }}
{{- .Values.externalRedis.existingSecret }}
{{- else }}
{{- include "animegan.componentName" (list . "redis-url") }}
{{- end }}
{{- end }}

{{- define "animegan.redisSecretKey" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret }}
{{- .Values.externalRedis.existingSecretKey }}
{{- else }}
{{- print "redis-url" }}
{{- end }}
{{- end }}

{{/*
Redis URL of the in-chart Redis (db 0).
*/}}
{{- define "animegan.inChartRedisUrl" -}}
{{- printf "redis://%s:%d/0" (include "animegan.componentName" (list . "redis")) (int .Values.redis.service.port) }}
{{- end }}

{{/*
One environment variable, or nothing when the value is null or an empty list (the process default
applies then). Lists are joined with commas.
Whole numbers print without an exponent (values arrive as float64: 40000000 would print 4e+07).
Usage: include "animegan.envVar" (list "ANIMEGAN_MAX_SIDE" .Values.config.maxSide)
*/}}
{{- define "animegan.envVar" -}}
{{- $value := index . 1 }}
{{- if and (not (kindIs "invalid" $value)) (or (not (kindIs "slice" $value)) $value) }}
{{- if kindIs "slice" $value }}
{{- $value = join "," $value }}
{{- else if and (kindIs "float64" $value) (eq $value (floor $value)) }}
{{- $value = int64 $value }}
{{- end }}
- name: {{ index . 0 }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
Environment of both roles: the settings in .Values.config, then Redis, then the object store's
credentials and region (.Values.objectStorage).
*/}}
{{- define "animegan.commonEnv" -}}
{{- range $key, $value := .Values.config }}
{{- include "animegan.envVar" (list (printf "ANIMEGAN_%s" ($key | snakecase | upper)) $value) }}
{{- end }}
- name: ANIMEGAN_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "animegan.redisSecretName" . }}
      key: {{ include "animegan.redisSecretKey" . }}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret }}
{{- if .Values.externalRedis.existingSecretBrokerKey }}
- name: ANIMEGAN_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.existingSecretBrokerKey }}
{{- end }}
{{- else if and (not .Values.redis.enabled) .Values.externalRedis.brokerUrl }}
- name: ANIMEGAN_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "animegan.redisSecretName" . }}
      key: broker-url
{{- end }}
{{- with .Values.objectStorage }}
{{- if .region }}
- name: AWS_REGION
  value: {{ .region | quote }}
{{- end }}
{{- if .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Threads per worker child: worker.threads, else floor(CPU request / concurrency), at least 1;
empty when neither is known (the worker then divides its cgroup CPU quota itself).
*/}}
{{- define "animegan.workerThreads" -}}
{{- if .Values.worker.threads }}
{{- .Values.worker.threads | int }}
{{- else }}
{{- $cpu := dig "requests" "cpu" "" (.Values.worker.resources | default dict) | toString }}
{{- if $cpu }}
{{- $milli := 0 }}
{{- if hasSuffix "m" $cpu }}
{{- $milli = trimSuffix "m" $cpu | int }}
{{- else }}
{{- $milli = mulf (float64 $cpu) 1000 | int }}
{{- end }}
{{- max 1 (div $milli (mul 1000 (.Values.worker.concurrency | int))) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
host:port of Redis for KEDA's redis scaler.
*/}}
{{- define "animegan.kedaRedisAddress" -}}
{{- if .Values.worker.keda.redisAddress }}
{{- .Values.worker.keda.redisAddress }}
{{- else if .Values.redis.enabled }}
{{- printf "%s.%s.svc:%d" (include "animegan.componentName" (list . "redis")) .Release.Namespace (int .Values.redis.service.port) }}
{{- else }}
{{- fail "worker.keda.redisAddress is required with an external Redis (host:port as KEDA reaches it)" }}
{{- end }}
{{- end }}

{{/*
Pod-level fields shared by the api and worker pods.
*/}}
{{- define "animegan.podCommon" -}}
serviceAccountName: {{ include "animegan.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
