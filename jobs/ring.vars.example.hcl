# What the playbook renders for the example inventory.yaml (ring.vars.hcl next to the
# inventory): the job checker and the tests evaluate jobs/primacpp.nomad.hcl with it. Deploy
# with the file the playbook rendered for YOUR inventory, never with this one.

ranks = [
  { node = "node1", layers = 14, gpu_layers = 0, uid = 999, gid = 999, memory_mb = 342 },
  { node = "node2", layers = 8, gpu_layers = 0, uid = 999, gid = 999, memory_mb = 306 },
  { node = "node3", layers = 8, gpu_layers = 0, uid = 999, gid = 999, memory_mb = 306 }
]

model_path   = "/opt/primacpp/models/SmolLM2-135M-Instruct.Q4_1.gguf"
model_sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
api_port     = 8080
data_port    = 9000
signal_port  = 10000
ctx_size     = 4096
rpc_port     = 50052

user             = "primacpp"
primacpp_bin_dir = "/opt/primacpp/bin"
llamacpp_bin_dir = "/opt/llama.cpp/bin"
nomad_addr       = "http://127.0.0.1:4646"
nomad_ca_cert    = ""
