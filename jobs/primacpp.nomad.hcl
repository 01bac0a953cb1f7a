# The prima.cpp ring: one LLM split by layers across the cluster's machines, served as an
# OpenAI-compatible API by rank 0 (service "primacpp-api"), plus the watchdog that restarts
# the whole ring when any rank fails (a broken ring hangs requests while /health says 200).
#
#   nomad var put nomad/jobs/primacpp api_key=<secret>      # once (or the playbook's deploy tag)
#   nomad job run -var-file=<inventory dir>/ring.vars.hcl jobs/primacpp.nomad.hcl
#
# The playbook renders ring.vars.hcl next to the inventory (and on the master, in
# /opt/primacpp/ring.vars.hcl): the ranks pinned to the inventory's Nomad node names, the layer
# windows, the model and the ports. Without it the job refuses to run (docs/cluster.md).
#
# Each rank is its own group (count = 1) generated from var.ranks and pinned to its node:
# NOMAD_ALLOC_INDEX is not unique across canaries and reschedules, so it never defines a rank.

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the ring may run in."
  default     = ["dc1"]
}

variable "engine" {
  type        = string
  description = "Ring engine: \"primacpp\" (prima.cpp: llama/qwen2 GGUFs, layer pipeline) or \"rpc\" (llama.cpp RPC: any GGUF llama.cpp loads, e.g. Gemma, Qwen3, MoE)."
  default     = "primacpp"

  validation {
    condition     = contains(["primacpp", "rpc"], var.engine)
    error_message = "The engine must be \"primacpp\" or \"rpc\"."
  }
}

variable "ranks" {
  type = list(object({
    node       = string
    layers     = number
    gpu_layers = number
    uid        = number
    gid        = number
    memory_mb  = number
  }))
  description = "The ring in rank order (rendered by the playbook into ring.vars.hcl next to the inventory). node: the Nomad node name the rank is pinned to; layers: how many model layers the rank holds (the -lw layer window; the sum must divide the model's layer count); gpu_layers: how many of those layers go to the node's GPU (0 without one); uid/gid: the numeric ids of var.user on that node (owner of the rank's secrets); memory_mb: the rank's memory limit, from its share of the model's bytes plus its KV cache (docs/cluster.md)."
  default     = []

  validation {
    condition     = length(var.ranks) > 0
    error_message = "No ranks given: run the playbook, which renders the ring's variables into ring.vars.hcl next to your inventory (and /opt/primacpp/ring.vars.hcl on the master), then: nomad job run -var-file=<inventory dir>/ring.vars.hcl jobs/primacpp.nomad.hcl."
  }

  validation {
    condition     = length(var.ranks) == 0 || (length(var.ranks) >= 2 && length(var.ranks) <= 32)
    error_message = "The ring needs between 2 and 32 ranks."
  }

  validation {
    condition     = length([for r in var.ranks : r if r.layers < 1 || r.gpu_layers < 0 || r.gpu_layers > r.layers]) == 0
    error_message = "Every rank needs layers >= 1 and 0 <= gpu_layers <= layers."
  }

  validation {
    condition     = length([for r in var.ranks : r if r.memory_mb < 64]) == 0
    error_message = "Every rank needs memory_mb >= 64 (the playbook derives it from the model: docs/cluster.md)."
  }
}

variable "user" {
  type        = string
  description = "Unprivileged user the engines and the watchdog run as (created by the primacpp role on every ring node)."
  default     = "primacpp"
}

variable "model_path" {
  type        = string
  description = "Absolute path of the GGUF model on every ring node (the same file everywhere), inside the models host volume."
  default     = "/opt/primacpp/models/SmolLM2-135M-Instruct.Q4_1.gguf"
}

variable "model_sha256" {
  type        = string
  description = "SHA-256 of the model file (rendered by the playbook, which checked it on every node); shown in the job's meta."
  default     = ""
}

variable "models_volume" {
  type        = string
  description = "Name of the client host volume that holds the models (read-only); placement requires it on every ring node."
  default     = "models"
}

variable "api_port" {
  type        = number
  description = "Port of rank 0's OpenAI-compatible API (llama-server), bound to the node's cluster address."
  default     = 8080
}

variable "data_port" {
  type        = number
  description = "prima.cpp data port base: rank r listens on data_port + r (all interfaces; firewall it to the cluster)."
  default     = 9000
}

variable "signal_port" {
  type        = number
  description = "prima.cpp signal port base: rank r listens on signal_port + r."
  default     = 10000
}

variable "rpc_port" {
  type        = number
  description = "Port of ggml-rpc-server on the worker ranks (engine \"rpc\" only), bound to the node's cluster address."
  default     = 50052
}

variable "ctx_size" {
  type        = number
  description = "Context size in tokens (set on rank 0, shared by the parallel slots)."
  default     = 4096
}

variable "parallel" {
  type        = number
  description = "Parallel request slots on rank 0 (llama-server -np)."
  default     = 2
}

variable "threads" {
  type        = number
  description = "CPU threads per rank (0 lets the engine choose)."
  default     = 0
}

variable "prefetch" {
  type        = bool
  description = "prima.cpp --prefetch: prefetch the next layers' weights (upstream uses it everywhere)."
  default     = true
}

variable "discovery_timeout" {
  type        = number
  description = "Seconds a starting rank waits for its peers' addresses to appear in Nomad's service catalogue before it exits (Nomad then restarts it)."
  default     = 600
}

variable "primacpp_bin_dir" {
  type        = string
  description = "Directory with prima.cpp's llama-server and llama-cli on every ring node (built by the primacpp role)."
  default     = "/opt/primacpp/bin"
}

variable "llamacpp_bin_dir" {
  type        = string
  description = "Directory with llama.cpp's llama-server and ggml-rpc-server on every ring node (engine \"rpc\")."
  default     = "/opt/llama.cpp/bin"
}

variable "launcher" {
  type        = string
  description = "Path of the ring launcher installed by the primacpp role."
  default     = "/usr/local/bin/primacpp-ring-launch"
}

variable "watchdog" {
  type        = string
  description = "Path of the ring watchdog installed by the primacpp role."
  default     = "/usr/local/bin/primacpp-ring-watchdog"
}

variable "api_key_var" {
  type        = string
  description = "Nomad Variables path holding the API key (item \"api_key\"); the pipecatapp job reads the same path."
  default     = "nomad/jobs/primacpp"
}

variable "nomad_addr" {
  type        = string
  description = "Nomad HTTP API address the watchdog uses (the local agent by default)."
  default     = "http://127.0.0.1:4646"
}

variable "nomad_ca_cert" {
  type        = string
  description = "CA certificate file on the node that verifies an https nomad_addr (empty: the system's CAs)."
  default     = ""
}

variable "nomad_client_cert" {
  type        = string
  description = "Client certificate file on the node for an https nomad_addr that verifies clients (empty: none)."
  default     = ""
}

variable "nomad_client_key" {
  type        = string
  description = "Key of nomad_client_cert on the node."
  default     = ""
}

variable "watchdog_interval" {
  type        = number
  description = "Seconds between two watchdog checks."
  default     = 10
}

variable "probe_timeout" {
  type        = number
  description = "Seconds the watchdog waits for its one-token completion before calling the ring broken."
  default     = 30
}

variable "load_grace" {
  type        = number
  description = "Seconds after a (re)start during which a loading ring is not restarted (model load time, with margin)."
  default     = 300
}

variable "return_grace" {
  type        = number
  description = "Seconds a ring whose missing rank was placed again (its node came back) gets to answer before the watchdog restarts it whole."
  default     = 30
}

variable "rank_cpu_mhz" {
  type        = number
  description = "CPU (MHz) reserved for each rank."
  default     = 1000
}

job "primacpp" {
  datacenters = var.datacenters
  type        = "service"

  meta {
    model_path   = var.model_path
    model_sha256 = var.model_sha256
  }

  # A ring is one unit: update every rank at once, and keep going if one is slow to load.
  update {
    max_parallel      = 1
    health_check      = "task_states"
    min_healthy_time  = "10s"
    healthy_deadline  = "15m"
    progress_deadline = "20m"
    auto_revert       = false
  }

  dynamic "group" {
    for_each = var.ranks
    labels   = ["rank-${group.key}"]

    content {
      count = 1

      constraint {
        attribute = "${node.unique.name}"
        value     = group.value.node
      }

      volume "models" {
        type      = "host"
        source    = var.models_volume
        read_only = true
      }

      network {
        port "data" {
          static = var.data_port + group.key
        }
        port "signal" {
          static = var.signal_port + group.key
        }
        # rank 0 serves the API; with the RPC engine the workers serve ggml-rpc-server.
        dynamic "port" {
          for_each = group.key == 0 ? ["api"] : []
          labels   = [port.value]
          content {
            static = var.api_port
          }
        }
        dynamic "port" {
          for_each = var.engine == "rpc" && group.key > 0 ? ["rpc"] : []
          labels   = [port.value]
          content {
            static = var.rpc_port
          }
        }
      }

      # A lone restarted rank cannot rejoin a running ring (it aborts); the watchdog restarts
      # the whole ring instead, and a dead rank comes back by this policy. "delay" keeps
      # retrying without failing the allocation, which could not move anyway: it is pinned.
      restart {
        attempts = 10
        interval = "10m"
        delay    = "5s"
        mode     = "delay"
      }

      reschedule {
        unlimited      = true
        delay          = "30s"
        delay_function = "exponential"
        max_delay      = "10m"
      }

      # Discovery: every rank announces its node address; the others read it in the template.
      service {
        provider = "nomad"
        name     = "primacpp-rank-${group.key}"
        port     = "data"
        tags     = ["rank-${group.key}", "engine-${var.engine}"]
      }

      dynamic "service" {
        for_each = group.key == 0 ? ["primacpp-api"] : []
        content {
          provider = "nomad"
          name     = service.value
          port     = "api"
          tags     = ["openai", "engine-${var.engine}"]

          check {
            name     = "api-health"
            type     = "http"
            path     = "/health"
            interval = "10s"
            timeout  = "3s"
          }
        }
      }

      task "rank" {
        driver       = "raw_exec"
        user         = var.user
        kill_signal  = "SIGINT"
        kill_timeout = "10s"

        config {
          command = var.launcher
          args    = ["--settings", "local/ring.env"]
        }

        # Settings for primacpp-ring-launch. change_mode "noop": the launcher waits (bounded)
        # until every peer address it needs is present, and a running rank is never restarted
        # by discovery churn; whole-ring restarts are the watchdog's job.
        template {
          destination = "local/ring.env"
          change_mode = "noop"
          data        = <<EOT
PRIMACPP_ENGINE=${var.engine}
PRIMACPP_RANK=${group.key}
PRIMACPP_WORLD=${length(var.ranks)}
PRIMACPP_LAYER_WINDOW=${join(",", [for r in var.ranks : r.layers])}
PRIMACPP_GPU_LAYERS=${group.value.gpu_layers}
PRIMACPP_MODEL=${var.model_path}
PRIMACPP_PRIMA_BIN_DIR=${var.primacpp_bin_dir}
PRIMACPP_LLAMA_BIN_DIR=${var.llamacpp_bin_dir}
PRIMACPP_DATA_PORT=${var.data_port}
PRIMACPP_SIGNAL_PORT=${var.signal_port}
PRIMACPP_RPC_PORT=${var.rpc_port}
PRIMACPP_API_PORT=${var.api_port}
PRIMACPP_CTX_SIZE=${var.ctx_size}
PRIMACPP_PARALLEL=${var.parallel}
PRIMACPP_THREADS=${var.threads}
PRIMACPP_PREFETCH=${var.prefetch}
PRIMACPP_DISCOVERY_TIMEOUT=${var.discovery_timeout}
PRIMACPP_API_KEY_FILE={{ env "NOMAD_SECRETS_DIR" }}/api-key
PRIMACPP_BIND_IP={{ env "NOMAD_IP_data" }}
PRIMACPP_MASTER_IP={{ with nomadService "primacpp-rank-0" }}{{ (index . 0).Address }}{{ end }}
PRIMACPP_NEXT_IP={{ with nomadService "primacpp-rank-${(group.key + 1) % length(var.ranks)}" }}{{ (index . 0).Address }}{{ end }}
PRIMACPP_RANK_IPS=%{ for i, r in var.ranks }%{ if i > 0 },%{ endif }{{ with nomadService "primacpp-rank-${i}" }}{{ (index . 0).Address }}{{ end }}%{ endfor }
EOT
        }

        # The API key, from Nomad Variables; never written in this file. Readable by the
        # task's user only.
        template {
          destination = "secrets/api-key"
          change_mode = "restart"
          perms       = "0400"
          uid         = group.value.uid
          gid         = group.value.gid
          data        = "{{ with nomadVar \"${var.api_key_var}\" }}{{ .api_key }}{{ end }}"
        }

        resources {
          cpu    = var.rank_cpu_mhz
          memory = group.value.memory_mb
        }
      }
    }
  }

  # The watchdog probes rank 0 with a one-token completion and restarts every rank's
  # allocation through the Nomad API when the ring is broken. Its token is the task's
  # workload identity; attach jobs/primacpp-watchdog.policy.hcl to it (the README (Nomad jobs)).
  # It runs on rank 0's node (the ring cannot serve without it), as var.user.
  group "watchdog" {
    count = 1

    constraint {
      attribute = "${node.unique.name}"
      value     = var.ranks[0].node
    }

    restart {
      attempts = 5
      interval = "10m"
      delay    = "10s"
      mode     = "delay"
    }

    task "watchdog" {
      driver = "raw_exec"
      user   = var.user

      identity {
        env = true
      }

      config {
        command = var.watchdog
        args = [
          "--nomad-addr", var.nomad_addr,
          "--job", "${NOMAD_JOB_ID}",
          "--api-service", "primacpp-api",
          "--api-key-file", "${NOMAD_SECRETS_DIR}/api-key",
          "--interval", "${var.watchdog_interval}",
          "--probe-timeout", "${var.probe_timeout}",
          "--load-grace", "${var.load_grace}",
          "--return-grace", "${var.return_grace}",
        ]
      }

      env {
        NOMAD_CACERT      = var.nomad_ca_cert
        NOMAD_CLIENT_CERT = var.nomad_client_cert
        NOMAD_CLIENT_KEY  = var.nomad_client_key
      }

      template {
        destination = "secrets/api-key"
        change_mode = "restart"
        perms       = "0400"
        uid         = var.ranks[0].uid
        gid         = var.ranks[0].gid
        data        = "{{ with nomadVar \"${var.api_key_var}\" }}{{ .api_key }}{{ end }}"
      }

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
