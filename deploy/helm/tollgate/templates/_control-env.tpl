{{/* The control plane's environment, shared by the Deployment and the migration Job. */}}
{{- define "tollgate.controlEnv" -}}
{{ include "tollgate.secretEnv" (dict "name" "TOLLGATE_DATABASE__URL" "ref" .Values.secrets.databaseUrl) }}
{{ include "tollgate.secretEnv" (dict "name" "TOLLGATE_AUTH__KEY_PEPPER" "ref" .Values.secrets.pepper) }}
{{ include "tollgate.secretEnv" (dict "name" "TOLLGATE_TELEMETRY__WEBHOOK_KEY" "ref" .Values.secrets.webhookKey) }}
{{- if .Values.secrets.oidcClientSecret.existingSecret }}
{{ include "tollgate.secretEnv" (dict "name" "TOLLGATE_OIDC__CLIENT_SECRET" "ref" .Values.secrets.oidcClientSecret) }}
{{- end }}
- name: TOLLGATE_SERVER__LISTEN
  value: "0.0.0.0:{{ .Values.control.service.httpPort }}"
- name: TOLLGATE_GRPC__LISTEN
  value: "0.0.0.0:{{ .Values.control.service.grpcPort }}"
- name: TOLLGATE_SERVER__LOG_FORMAT
  value: {{ .Values.control.logFormat | quote }}
{{- range $name, $value := .Values.control.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}
