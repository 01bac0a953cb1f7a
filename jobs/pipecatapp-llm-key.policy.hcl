# ACL policy for the voice app: read the LLM API key stored with the ring job.
# A job's workload identity reads only its own nomad/jobs/<job> paths by default.
# Attach it to the pipecatapp job's workload identity:
#   nomad acl policy apply -namespace default -job pipecatapp \
#     pipecatapp-llm-key jobs/pipecatapp-llm-key.policy.hcl
namespace "default" {
  variables {
    path "nomad/jobs/primacpp" {
      capabilities = ["read"]
    }
  }
}
