"""Hosts: the machine whose hypervisor hvbench drives (this one, or one over SSH)."""
