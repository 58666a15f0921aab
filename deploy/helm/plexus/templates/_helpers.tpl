{{/* Names, labels and the platform presets. */}}

{{- define "plexus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "plexus.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "plexus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plexus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* No helm.sh/chart or managed-by label: the kustomize base renders the same objects. */}}
{{- define "plexus.labels" -}}
{{ include "plexus.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: plexus
{{- end -}}

{{- define "plexus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "plexus.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "plexus.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Platform presets: host paths of the runtime's CNI directories, NRI socket, containerd socket and netns
directory, directory of spec-less NADs' CNI configs. Sources: k3s docs and PR #10868 (data/cni since Oct 2024), Talos "Network"
docs, RKE2 docs, kind's node image (containerd 2.x), containerd's NRI defaults.
*/}}
{{- define "plexus.presets" -}}
generic:
  cniBinDir: /opt/cni/bin
  cniConfDir: /etc/cni/net.d
  nriSocket: /var/run/nri/nri.sock
  containerdSocket: /run/containerd/containerd.sock
  netnsDir: /var/run/netns
  nadConfDir: /etc/cni/multus/net.d
k3s:
  cniBinDir: /var/lib/rancher/k3s/data/cni
  cniConfDir: /var/lib/rancher/k3s/agent/etc/cni/net.d
  nriSocket: /var/run/nri/nri.sock
  containerdSocket: /run/k3s/containerd/containerd.sock
  netnsDir: /var/run/netns
  nadConfDir: /etc/cni/multus/net.d
talos:
  cniBinDir: /opt/cni/bin
  cniConfDir: /etc/cni/net.d
  nriSocket: /var/run/nri/nri.sock
  containerdSocket: /run/containerd/containerd.sock
  netnsDir: /var/run/netns
  # /etc is read-only on Talos.
  nadConfDir: /var/lib/plexus/net.d
rke2:
  cniBinDir: /opt/cni/bin
  cniConfDir: /etc/cni/net.d
  nriSocket: /var/run/nri/nri.sock
  containerdSocket: /run/k3s/containerd/containerd.sock
  netnsDir: /var/run/netns
  nadConfDir: /etc/cni/multus/net.d
kind:
  cniBinDir: /opt/cni/bin
  cniConfDir: /etc/cni/net.d
  nriSocket: /var/run/nri/nri.sock
  containerdSocket: /run/containerd/containerd.sock
  netnsDir: /var/run/netns
  nadConfDir: /etc/cni/multus/net.d
{{- end -}}

{{/* The effective host paths as a YAML dict: preset, then every non-empty `paths` key. */}}
{{- define "plexus.paths" -}}
{{- $presets := include "plexus.presets" . | fromYaml -}}
{{- $preset := get $presets .Values.platform -}}
{{- if not $preset -}}
{{- fail (printf "platform %q is not one of generic, k3s, talos, rke2, kind" .Values.platform) -}}
{{- end -}}
{{- $paths := deepCopy $preset -}}
{{- range $key, $value := .Values.paths -}}
{{- if $value -}}
{{- $_ := set $paths $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $paths -}}
{{- end -}}

{{- define "plexus.nriEnabled" -}}
{{- if has .Values.mode (list "nri" "auto") -}}true{{- end -}}
{{- end -}}

{{- define "plexus.containerdAdoption" -}}
{{- if and (eq .Values.mode "shim") .Values.plexusd.adoptThroughContainerd -}}true{{- end -}}
{{- end -}}

{{/* NRI mode with early setup: plexusd watches containerd for new sandboxes and sets
     their networks up before the NRI hook asks (docs/config.md, Early setup). */}}
{{- define "plexus.containerdEarly" -}}
{{- if and (eq .Values.mode "nri") .Values.plexusd.earlySetup -}}true{{- end -}}
{{- end -}}

{{/* plexusd reads containerd's API (its socket's directory mounted read-only). */}}
{{- define "plexus.containerdApi" -}}
{{- if or (eq (include "plexus.containerdAdoption" .) "true") (eq (include "plexus.containerdEarly" .) "true") -}}true{{- end -}}
{{- end -}}

{{- define "plexus.shimEnabled" -}}
{{- if has .Values.mode (list "shim" "auto") -}}true{{- end -}}
{{- end -}}

{{/* plexusd's config file (docs/config.md), from values. */}}
{{- define "plexus.config" -}}
{{- $paths := include "plexus.paths" . | fromYaml -}}
{{- $d := .Values.plexusd -}}
{{- $config := dict
  "socket" (printf "%s/plexus.sock" $paths.socketDir)
  "stateDir" $paths.stateDir
  "cniBinDirs" (list $paths.cniBinDir)
  "cniConfDir" $paths.nadConfDir
  "cniCacheDir" (printf "%s/plexus" $paths.cniStateDir)
  "ipamDataDir" (printf "%s/networks" $paths.cniStateDir)
  "multusNamespace" $d.multusNamespace
  "systemNamespaces" $d.systemNamespaces
  "namespaceIsolation" $d.namespaceIsolation
  "globalNamespaces" $d.globalNamespaces
  "defaultNetworks" $d.defaultNetworks
  "delegation" $d.delegation
  "primaryMode" (ternary "plexus" "runtime" (eq (include "plexus.shimEnabled" .) "true"))
  "concurrency" (dict "maxParallel" $d.maxParallel "maxQueued" $d.maxQueued "nice" $d.nice)
  "nri" (dict "deadlineBudget" $d.nriDeadline)
  "delegateTimeout" $d.delegateTimeout
  "reconcile" (dict "interval" $d.reconcileInterval)
-}}
{{- if $d.clusterNetwork -}}
{{- $_ := set $config "clusterNetwork" $d.clusterNetwork -}}
{{- end -}}
{{- if eq (include "plexus.shimEnabled" .) "true" -}}
{{- /* Shim path: plexusd writes 00-plexus.conflist wrapping the runtime's primary config
       and keeps the shim installed in the CNI bin dir (docs/config.md, CNI shim path). */ -}}
{{- $_ := set $config "cni" (dict "install" "auto" "confDir" $paths.cniConfDir "binDir" $paths.cniBinDir) -}}
{{- end -}}
{{- if eq (include "plexus.containerdApi" .) "true" -}}
{{- /* No NRI Synchronize on the shim path: pods started before plexus are listed through
       containerd's API and adopted (docs/config.md, Pods started before plexus). In NRI
       mode the same socket serves early setup. */ -}}
{{- $_ := set $config "containerd" (dict "socket" $paths.containerdSocket "earlySetup" (eq (include "plexus.containerdEarly" .) "true")) -}}
{{- end -}}
{{- if eq $d.nadSource.type "kubernetes" -}}
{{- $k := dict -}}
{{- with $d.nadSource.namespaces -}}{{- $_ := set $k "namespaces" . -}}{{- end -}}
{{- with $d.nadSource.kubeconfig -}}{{- $_ := set $k "kubeconfig" . -}}{{- end -}}
{{- /* The kubelet's pod-resources socket, in the directory the DaemonSet mounts (plexusd's
       default when the directory is the kubelet's default). */ -}}
{{- if ne $paths.podResourcesDir "/var/lib/kubelet/pod-resources" -}}
{{- $_ := set $k "podResourcesSocket" (printf "%s/kubelet.sock" $paths.podResourcesDir) -}}
{{- end -}}
{{- $_ := set $config "nadSource" (dict "kubernetes" $k) -}}
{{- else -}}
{{- $_ := set $config "nadSource" (dict "directory" $d.nadSource.directory) -}}
{{- end -}}
{{- $telemetry := dict "logLevel" $d.logLevel "logFormat" $d.logFormat -}}
{{- with $d.otlpEndpoint -}}{{- $_ := set $telemetry "otlpEndpoint" . -}}{{- end -}}
{{- if .Values.metrics.enabled -}}
{{- $_ := set $telemetry "metricsAddress" (printf "0.0.0.0:%d" (int .Values.metrics.port)) -}}
{{- end -}}
{{- $_ := set $config "telemetry" $telemetry -}}
{{- toYaml (mergeOverwrite $config (deepCopy $d.extraConfig)) -}}
{{- end -}}
