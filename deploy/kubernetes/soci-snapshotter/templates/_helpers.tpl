{{- define "soci-snapshotter.namespace" -}}
{{ .Values.namespace | default .Release.Namespace }}
{{- end }}

{{- define "soci-snapshotter.labels" -}}
app.kubernetes.io/name: soci-snapshotter
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The one place the container command is written (harness/chart.ts reads it back). */}}
{{- define "soci-snapshotter.command" -}}
- soci-snapshotter-grpc
- --address
- {{ .Values.daemon.address | quote }}
- --root
- {{ .Values.daemon.root | quote }}
- --config
- /etc/soci-snapshotter-grpc/config.toml
- --log-level
- {{ .Values.daemon.logLevel | quote }}
{{- end }}

{{- define "soci-snapshotter.probe" -}}
httpGet:
  path: /metrics
  port: metrics
periodSeconds: {{ .Values.probes.periodSeconds }}
timeoutSeconds: {{ .Values.probes.timeoutSeconds }}
{{- end }}
