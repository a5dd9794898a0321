{{/*
The chart name, or nameOverride.
*/}}
{{- define "eol.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else `<release>-<name>`,
or just the release name when it already contains the chart name.
*/}}
{{- define "eol.fullname" -}}
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
`name-version` for the helm.sh/chart label.
*/}}
{{- define "eol.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels every object of the release carries.
*/}}
{{- define "eol.labels" -}}
helm.sh/chart: {{ include "eol.chart" . }}
{{ include "eol.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eol
{{- end }}

{{/*
The labels selecting the operator pods (never change them on upgrade: a
Deployment's selector is immutable).
*/}}
{{- define "eol.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eol.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "eol.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eol.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "eol.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}

{{/*
The namespaces the runner NetworkPolicy goes into.
*/}}
{{- define "eol.networkPolicyNamespaces" -}}
{{- if .Values.networkPolicy.namespaces }}
{{- toJson .Values.networkPolicy.namespaces }}
{{- else if .Values.watchNamespace }}
{{- toJson (list .Values.watchNamespace) }}
{{- else }}
{{- fail "networkPolicy.enabled: set networkPolicy.namespaces (the operator watches all namespaces, so the chart cannot tell where runner pods run)" }}
{{- end }}
{{- end }}

{{/*
The name of the operator's PriorityLevelConfiguration and FlowSchema: both are
cluster-scoped, so the release namespace is part of it (two releases of the same
name in different namespaces, e.g. one namespace-scoped operator per team, would
otherwise claim the same objects).
*/}}
{{- define "eol.flowControlName" -}}
{{- printf "%s-%s" (include "eol.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The ClusterRole serving pods review callers with, and the one letting the
operator bind it: cluster-scoped, so named after the release namespace too
(two releases never share them).
*/}}
{{- define "eol.runnerReviewerRole" -}}
{{- printf "%s-%s-runner-reviewer" (include "eol.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "eol.runnerAccessName" -}}
{{- printf "%s-%s-runner-access" (include "eol.fullname" .) .Release.Namespace }}
{{- end }}
