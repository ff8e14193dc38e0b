# A stack that costs nothing to apply, for make bench's orchestration
# overhead: one built-in resource, replaced by each version, no provisioner.
variable "application" { type = string }
variable "region" { type = string }
variable "app_version" { type = string }

resource "terraform_data" "release" {
  triggers_replace = var.app_version
}
