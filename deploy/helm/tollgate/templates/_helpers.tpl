{{/* Names: <release>-tollgate, truncated to what Kubernetes allows. */}}
{{- define "tollgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tollgate.controlSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: control-plane
{{- end -}}

{{/* Selector of one region's gateways; call with (dict "root" $ "region" $region). */}}
{{- define "tollgate.gatewaySelector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: gateway
tollgate.dev/region: {{ .region.name }}
{{- end -}}

{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tollgate.image" -}}
{{- printf "%s%s:%s" .root.Values.image.registry .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* An env var from a referenced Secret: (dict "name" "VAR" "ref" .Values.secrets.x) */}}
{{- define "tollgate.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "%s: existingSecret is required" .name) .ref.existingSecret }}
      key: {{ .ref.key }}
{{- end -}}

{{- define "tollgate.controlUrl" -}}
{{- if .Values.gateway.controlUrl -}}
{{- .Values.gateway.controlUrl -}}
{{- else -}}
{{- printf "https://%s-control-grpc.%s.svc:%d" (include "tollgate.fullname" .) .Release.Namespace (int .Values.control.service.grpcPort) -}}
{{- end -}}
{{- end -}}
