{{/* Name of every object: the Helm release name, so two releases never collide. */}}
{{- define "demo.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
A label-safe version: label values allow [A-Za-z0-9._-] and 63 characters,
so semver build metadata ("+sha") becomes "_sha".
*/}}
{{- define "demo.versionLabel" -}}
{{- .Values.version | toString | replace "+" "_" | trunc 63 | trimSuffix "-" | trimSuffix "." -}}
{{- end -}}

{{/* Selector labels never change between versions: Deployment selectors are immutable. */}}
{{- define "demo.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "demo.labels" -}}
{{ include "demo.selectorLabels" . }}
app.kubernetes.io/version: {{ include "demo.versionLabel" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* True when the version asks the lab to simulate pods that never become Ready. */}}
{{- define "demo.unready" -}}
{{- if hasSuffix "-unready" (.Values.version | toString) -}}true{{- end -}}
{{- end -}}

{{/* Labels of a hook Job and its pod: (dict "ctx" $ "hook" "pre-upgrade"). */}}
{{- define "demo.hookLabels" -}}
app.kubernetes.io/name: {{ printf "%s-hook" .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .hook }}
app.kubernetes.io/version: {{ include "demo.versionLabel" .ctx | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end -}}
