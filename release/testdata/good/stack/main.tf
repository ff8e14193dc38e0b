resource "terraform_data" "placeholder" {}
