# The voice app (pipecat): microphone -> STT -> the ring's LLM -> TTS -> speaker, on the
# audio node. It finds the LLM through Nomad's service "primacpp-api" (registered by rank 0
# of jobs/primacpp.nomad.hcl) and reads the API key from Nomad Variables.
#
#   nomad acl policy apply -namespace default -job pipecatapp \
#     pipecatapp-llm-key jobs/pipecatapp-llm-key.policy.hcl      # once; see the README (Nomad jobs)
#   nomad job run jobs/pipecatapp.nomad.hcl

variable "datacenters" {
  type        = list(string)
  description = "Datacenters the app may run in."
  default     = ["dc1"]
}

variable "venv" {
  type        = string
  description = "The app's virtualenv on the audio node (installed by the pipecatapp role; listed in the client's chroot_env so the exec driver sees it)."
  default     = "/opt/pipecatapp/venv"
}

variable "config_file" {
  type        = string
  description = "YAML settings file on the audio node (written by the pipecatapp role); empty for defaults."
  default     = "/etc/pipecatapp/config.yaml"
}

variable "user" {
  type        = string
  description = "User the app runs as: the system user the pipecatapp role creates (pipecatapp_user), whose group owns config_file."
  default     = "pipecatapp"
}

variable "transport" {
  type        = string
  description = "Audio transport: \"webrtc\", the browser client served by the app (open the page from any device on the LAN). \"local\" (the node's own microphone and speaker) is refused under Nomad: the exec driver's chroot has no sound devices."
  default     = "webrtc"

  validation {
    condition     = contains(["webrtc", "local"], var.transport)
    error_message = "The transport must be \"webrtc\" (the file transport is for tests)."
  }

  validation {
    condition     = var.transport != "local"
    error_message = "transport = \"local\" cannot work under Nomad: the exec driver's chroot has no /dev/snd, so the app would find no microphone. Use the browser client instead (transport \"webrtc\", the default: open https://<audio node>:7860 from a phone or laptop on the LAN), or run `python -m pipecatapp --transport local` on the audio node outside Nomad."
  }
}

variable "webrtc_port" {
  type        = number
  description = "Port of the app's WebRTC page and signalling."
  default     = 7860
}

variable "https" {
  type        = bool
  description = "Serve the voice page over HTTPS with a self-signed certificate the app makes for the node's names and addresses (browsers give the microphone to a page from another device only over HTTPS). Set false behind your own TLS proxy."
  default     = true
}

variable "webrtc_host" {
  type        = string
  description = "Address the WebRTC page listens on (0.0.0.0: localhost for the browser's microphone, plus the cluster address for Nomad's health check)."
  default     = "0.0.0.0"
}

variable "llm_service" {
  type        = string
  description = "Nomad service of the OpenAI-compatible API (rank 0 of the ring)."
  default     = "primacpp-api"
}

variable "api_key_var" {
  type        = string
  description = "Nomad Variables path holding the API key (item \"api_key\"), the same as the ring job's."
  default     = "nomad/jobs/primacpp"
}

variable "nomad_addr" {
  type        = string
  description = "Nomad HTTP API the app asks for the LLM's address when the rendered URL is still empty."
  default     = "http://127.0.0.1:4646"
}

job "pipecatapp" {
  datacenters = var.datacenters
  type        = "service"

  group "app" {
    count = 1

    # The audio node (node meta audio = "true", set by the nomad role).
    constraint {
      attribute = "${meta.audio}"
      value     = "true"
    }

    network {
      port "http" {
        static = var.webrtc_port
      }
    }

    restart {
      attempts = 5
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    service {
      provider = "nomad"
      name     = "pipecatapp"
      port     = "http"

      check {
        name     = "webrtc-listening"
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "app" {
      driver      = "exec"
      user        = var.user
      kill_signal = "SIGINT"

      # NOMAD_TOKEN = the task's workload identity: enough to read service registrations.
      identity {
        env = true
      }

      config {
        command = "${var.venv}/bin/python"
        args = [
          "-m", "pipecatapp",
          "--config", var.config_file,
          "--transport", var.transport,
          "--host", var.webrtc_host,
          "--port", "${var.webrtc_port}",
        ]
      }

      env {
        NOMAD_ADDR             = var.nomad_addr
        PIPECATAPP_LLM_SERVICE = var.llm_service
        PIPECATAPP_WEBRTC_HTTPS = var.https ? "true" : "false"
        # The self-signed certificate is made once per allocation and kept in its data dir.
        PIPECATAPP_CACHE_DIR = "${NOMAD_ALLOC_DIR}/data/pipecatapp"
      }

      # The LLM's URL from Nomad's service registry, and the API key from Nomad Variables;
      # a moved rank 0 or a new key restarts the app with the new values.
      template {
        destination = "secrets/llm.env"
        env         = true
        change_mode = "restart"
        data        = <<EOT
PIPECATAPP_LLM_URL={{ with nomadService "${var.llm_service}" }}http://{{ (index . 0).Address }}:{{ (index . 0).Port }}/v1{{ end }}
PIPECATAPP_LLM_API_KEY={{ with nomadVar "${var.api_key_var}" }}{{ .api_key }}{{ end }}
EOT
      }

      resources {
        cpu    = 2000
        memory = 3072
      }
    }
  }
}
