{{/* Names and labels shared by every template. */}}
{{- define "flowdeck.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "flowdeck.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flowdeck.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "flowdeck.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "flowdeck.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowdeck.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flowdeck.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "flowdeck.secretName" -}}
{{- .Values.existingSecret | default (include "flowdeck.fullname" .) -}}
{{- end -}}

{{- define "flowdeck.ownerSecretName" -}}
{{- .Values.database.existingOwnerSecret | default (printf "%s-migrate" (include "flowdeck.fullname" .)) -}}
{{- end -}}

{{/* Environment of every long-running server process (web, worker, beat): the app role only. */}}
{{- define "flowdeck.envFrom" -}}
- configMapRef:
    name: {{ include "flowdeck.fullname" . }}
- secretRef:
    name: {{ include "flowdeck.secretName" . }}
{{- end -}}

{{- define "flowdeck.podSpecCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Restart pods when their configuration changes. */}}
{{- define "flowdeck.configChecksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}
