{{/*
The chart's name, shortened to the 63 characters a label value allows.
*/}}
{{- define "sendgrid-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every object: <release>-<chart>, or the release name alone when it already
contains the chart name (so `helm install sendgrid-operator ...` gives "sendgrid-operator").
*/}}
{{- define "sendgrid-operator.fullname" -}}
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
The helm.sh/chart label value.
*/}}
{{- define "sendgrid-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the operator's Pods. They never change between upgrades.
*/}}
{{- define "sendgrid-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sendgrid-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels of every object the chart creates.
*/}}
{{- define "sendgrid-operator.labels" -}}
helm.sh/chart: {{ include "sendgrid-operator.chart" . }}
{{ include "sendgrid-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: sendgrid-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The ServiceAccount's name.
*/}}
{{- define "sendgrid-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sendgrid-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference, used by the operator and (through SGOP_JOB_IMAGE) by every export Job.
*/}}
{{- define "sendgrid-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
"true" when kopf peering is on: more than one replica, or peering.enabled.
*/}}
{{- define "sendgrid-operator.peering" -}}
{{- if or (gt (int .Values.replicas) 1) .Values.peering.enabled }}true{{ end }}
{{- end }}

{{/*
The URL at which export Jobs reach the operator's Service (SGOP_REPORT_URL).
*/}}
{{- define "sendgrid-operator.reportURL" -}}
{{- if .Values.operator.reportURL }}{{ .Values.operator.reportURL }}{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "sendgrid-operator.fullname" .) .Release.Namespace (int .Values.service.port) }}
{{- end }}
{{- end }}
