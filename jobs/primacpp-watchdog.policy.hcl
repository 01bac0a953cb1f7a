# ACL policy for the ring watchdog: read the ring job and its allocations, restart them.
# Nothing else (no job submission, no exec, no variables beyond the task's own).
# Attach it to the watchdog task's workload identity:
#   nomad acl policy apply -namespace default -job primacpp -group watchdog -task watchdog \
#     primacpp-watchdog jobs/primacpp-watchdog.policy.hcl
namespace "default" {
  # read-job: GET /v1/job/:id, /v1/job/:id/allocations, /v1/service/:name
  # alloc-lifecycle: POST /v1/client/allocation/:id/restart
  capabilities = ["read-job", "alloc-lifecycle"]
}
