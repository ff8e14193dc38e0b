{{/*
The chart's name, or nameOverride.
*/}}
{{- define "keelson-worker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release name when it already
holds the chart's name, else RELEASE-CHART; fullnameOverride wins.
*/}}
{{- define "keelson-worker.fullname" -}}
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

{{- define "keelson-worker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keelson-worker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keelson-worker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "keelson-worker.labels" -}}
helm.sh/chart: {{ include "keelson-worker.chart" . }}
{{ include "keelson-worker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: worker
app.kubernetes.io/part-of: keelson
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "keelson-worker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keelson-worker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Secret with Slack's tokens: the user's, or the one the chart creates.
*/}}
{{- define "keelson-worker.secretName" -}}
{{- default (include "keelson-worker.fullname" .) .Values.slack.existingSecret }}
{{- end }}

{{- define "keelson-worker.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/*
The artifact store URL, required: rendering fails with what to set.
*/}}
{{- define "keelson-worker.artifactsURL" -}}
{{- $url := required "artifacts.url is required: the artifact store every worker shares, e.g. --set artifacts.url='s3://BUCKET/PREFIX?region=REGION' (file:///var/lib/keelson/artifacts only for a single replica you try out)" .Values.artifacts.url }}
{{- if and $url (not (contains "://" $url)) }}
{{- fail (printf "artifacts.url %q is not a URL: want s3://BUCKET/PREFIX?region=REGION or file:///abs/path" $url) }}
{{- end }}
{{- $url }}
{{- end }}

{{- define "keelson-worker.temporalAddress" -}}
{{- required "temporal.address is required: host:port of Temporal's frontend, e.g. --set temporal.address=temporal-frontend.temporal:7233" .Values.temporal.address }}
{{- end }}
