{{/* Chart name, overridable with nameOverride. */}}
{{- define "raidiam-token-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name if it already contains the chart name. */}}
{{- define "raidiam-token-operator.fullname" -}}
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

{{- define "raidiam-token-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "raidiam-token-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "raidiam-token-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "raidiam-token-operator.labels" -}}
helm.sh/chart: {{ include "raidiam-token-operator.chart" . }}
{{ include "raidiam-token-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: raidiam-token-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "raidiam-token-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "raidiam-token-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* registry/repository:tag, or @digest; the registry falls back to global.imageRegistry, the
convention umbrella charts use to point every subchart at one mirror. */}}
{{- define "raidiam-token-operator.image" -}}
{{- $registry := .Values.image.registry | default (.Values.global).imageRegistry -}}
{{- $repository := .Values.image.repository -}}
{{- if $registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository }}{{ end -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Several replicas elect the one that refreshes through a Lease; one replica needs none. */}}
{{- define "raidiam-token-operator.leaderElection" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/*
The permissions the operator uses in each namespace it serves: in a ClusterRole when it serves
every namespace, in a Role per namespace otherwise. Established by running the operator with
nothing else on a real API server (tests/e2e/test_rbac.py) and kept to what it calls.
*/}}
{{- define "raidiam-token-operator.rules" -}}
# RaidiamClients: kopf lists and watches them (the on.event handler feeds the refresh engine);
# get: a RaidiamRegistration's fromDirectory.clientRef is read for its token Secret and
# certificate (list already shows as much).
- apiGroups: [raidiam.io]
  resources: [raidiamclients]
  verbs: [get, list, watch]
# RaidiamRegistrations: kopf lists and watches them; patch adds and removes the operator's
# finalizer (DELETE at the server, or the credentials Secret kept, before the object goes).
- apiGroups: [raidiam.io]
  resources: [raidiamregistrations]
  verbs: [list, watch, patch]
- apiGroups: [raidiam.io]
  resources: [raidiamregistrations/status]
  verbs: [patch]
# The engine writes Ready/Degraded, expiry and next refresh to the status subresource only.
- apiGroups: [raidiam.io]
  resources: [raidiamclients/status]
  verbs: [patch]
# Secrets: kopf lists and watches them so that a rotated transport certificate or signing key
# (often renewed by cert-manager, so not labelled by us) or a tampered token Secret is noticed at
# once; the engine reads the Secrets a RaidiamClient names, creates its token Secret and replaces
# it on renewal; likewise a RaidiamRegistration's credentials Secret. No delete: token and
# credentials Secrets go with their owner through the ownerReference.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update]
# ConfigMaps: read the CA bundle a RaidiamClient names in spec.caBundle.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
# Events: TokenIssued and the warnings (invalid_client, SecretNotFound, ...) on RaidiamClients.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/*
A Go-style duration (e.g. 336h, 90m, 1h30m) in whole seconds, for PromQL.
*/}}
{{- define "raidiam-token-operator.durationSeconds" -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+(ms|s|m|h)" . -1 -}}
{{- $number := regexFind "^[0-9]+" $part | int -}}
{{- if hasSuffix "ms" $part -}}
{{- else if hasSuffix "h" $part -}}{{- $total = add $total (mul $number 3600) -}}
{{- else if hasSuffix "m" $part -}}{{- $total = add $total (mul $number 60) -}}
{{- else -}}{{- $total = add $total $number -}}
{{- end -}}
{{- end -}}
{{- $total -}}
{{- end -}}
