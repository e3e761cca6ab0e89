"""Compute Engine driver on google-cloud-compute: clients, operations, VMs, firewall."""
