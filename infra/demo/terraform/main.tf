# The demo's per-region stack. It uses only Terraform's built-in
# terraform_data resource because no provider registry is reachable where
# Keelson's demo and tests run; it stands in for a region's network, bucket
# and the per-version release infrastructure.
#
# Keelson always passes application, region and app_version (the release's
# version: "version" is a reserved variable name in Terraform).

terraform {
  required_version = ">= 1.4"
}

variable "application" {
  type        = string
  description = "Application name, from the release file."
}

variable "region" {
  type        = string
  description = "Region name, from the release file."
}

variable "app_version" {
  type        = string
  description = "The version being released."
}

variable "api_server" {
  type        = string
  default     = ""
  description = "The region's Kubernetes API server, recorded for the demo."
}

variable "tier" {
  type    = string
  default = "standard"
}

variable "apply_delay" {
  type        = number
  default     = 0
  description = "Seconds the rollout resource waits before the release resource is created; tests use it to kill a worker in the middle of an apply."
}

# Created once per region and never replaced by a new version: a plan for a
# new version leaves it alone.
resource "terraform_data" "network" {
  input = {
    name = "keelson-${var.application}-${var.region}"
    tier = var.tier
  }
}

# Stands for the slow part of a rollout's infrastructure (a load balancer
# that takes a while). Replaced by every new version, before the release
# resource. Tests set apply_delay to kill a worker while it waits: the wait
# is here, and not in the release's provisioner, because a provisioner
# outlives a Terraform killed with SIGKILL, and a sleeping one would append
# its line on its own later, after Terraform died without recording the
# resource, so that the retry appended a second one.
resource "terraform_data" "rollout" {
  triggers_replace = var.app_version

  provisioner "local-exec" {
    command = "sleep ${var.apply_delay}"
  }
}

# Replaced by every new version. Its provisioner appends one line
# "<version> <timestamp>" to applies.log beside the state
# (${path.root} is the region's working copy). The integration tests count
# these lines to prove that each version was applied exactly once per
# region, even when the worker was killed mid-apply and the activity was
# retried: keep the append unconditional and instant, or the count would no
# longer prove anything.
resource "terraform_data" "release" {
  triggers_replace = var.app_version

  input = {
    version    = var.app_version
    api_server = var.api_server
    network    = terraform_data.network.id
    rollout    = terraform_data.rollout.id
  }

  provisioner "local-exec" {
    command = "echo \"${var.app_version} $(date -u +%Y-%m-%dT%H:%M:%SZ)\" >> \"${path.root}/applies.log\""
  }
}

output "endpoint" {
  value = "https://${var.application}.${var.region}.demo.internal"
}

output "bucket" {
  value = "keelson-${var.application}-${var.region}"
}

output "release_marker" {
  value = terraform_data.release.id
}
