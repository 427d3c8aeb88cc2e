{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "carbonshift.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: <release>-carbonshift, or the release name when it already says carbonshift. */}}
{{- define "carbonshift.fullname" -}}
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

{{- define "carbonshift.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release (Deployment selectors are immutable). */}}
{{- define "carbonshift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "carbonshift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "carbonshift.labels" -}}
helm.sh/chart: {{ include "carbonshift.chart" . }}
{{ include "carbonshift.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: carbonshift
{{- end }}

{{- define "carbonshift.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "carbonshift.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when a digest pins the image. */}}
{{- define "carbonshift.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/* The leader-election Lease, one per release. */}}
{{- define "carbonshift.leaseName" -}}
{{- printf "%s-leader" (include "carbonshift.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Namespace the operator's CarbonAwareJob/Job/Event permissions apply to ("" = cluster). */}}
{{- define "carbonshift.watchNamespace" -}}
{{- .Values.watchNamespace | default "" }}
{{- end }}

{{/* Where the credentials Secret is mounted; its keys become files, passed as *_FILE. */}}
{{- define "carbonshift.secretDir" -}}/var/run/secrets/carbonshift/forecast{{- end }}
{{- define "carbonshift.forecastFileDir" -}}/etc/carbonshift/forecast{{- end }}

{{/* Path the operator reads a "file" forecast from. */}}
{{- define "carbonshift.forecastFile" -}}
{{- if .Values.forecast.file }}
{{- .Values.forecast.file }}
{{- else if .Values.forecast.fileConfigMap.name }}
{{- printf "%s/%s" (include "carbonshift.forecastFileDir" .) .Values.forecast.fileConfigMap.key }}
{{- end }}
{{- end }}

{{/* Checks that cannot be expressed in values.schema.json. */}}
{{- define "carbonshift.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: two active operators would fight over the same Jobs" }}
{{- end }}
{{- if and (or (eq .Values.forecast.provider "file") (eq .Values.forecast.fallback "file")) (not (include "carbonshift.forecastFile" .)) }}
{{- fail "forecast.provider=file and forecast.fallback=file need forecast.file or forecast.fileConfigMap.name" }}
{{- end }}
{{- if and (eq .Values.forecast.provider "electricitymaps") (not .Values.forecast.existingSecret) (not (contains "ELECTRICITYMAPS_TOKEN" (toJson .Values.extraEnv))) }}
{{- fail "forecast.provider=electricitymaps needs forecast.existingSecret with an API token (key forecast.secretKeys.electricityMapsToken)" }}
{{- end }}
{{- if and (eq .Values.forecast.provider "watttime") (not .Values.forecast.existingSecret) (not (contains "WATTTIME_PASSWORD" (toJson .Values.extraEnv))) }}
{{- fail "forecast.provider=watttime needs forecast.existingSecret with a username and password (keys forecast.secretKeys.wattTimeUsername/wattTimePassword)" }}
{{- end }}
{{- end }}
