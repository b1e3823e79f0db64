terraform {
  required_version = ">= 1.11.0, < 2.0.0" # validations that read other variables (1.9), ephemeral resources (1.10) and write-only arguments (1.11)

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # The sessions table's indexes use key_schema (6.29.0), without the perpetual diff
      # on a range key (hashicorp/terraform-provider-aws#46442) and without removing one
      # index dropping them all (#46602), both fixed by 6.37.0.
      version = ">= 6.37.0, < 7.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6.0, < 4.0.0"
    }
  }
}

provider "aws" {
  # null: the region of the environment (AWS_REGION, the profile).
  region = var.region

  default_tags {
    tags = merge({ Project = var.name }, var.tags)
  }
}
