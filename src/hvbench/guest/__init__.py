"""The guest appliance (kernel + initramfs) and the agent that drives it."""
