"""The cloud stage: observe (VMs by label, the firewall rule) -> pure plan -> apply.

`spec` says what a farm is in Compute Engine terms, `plan` decides (no API calls), `apply`
acts on one planned action at a time under the runner.
"""
