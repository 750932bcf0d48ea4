"""Files that run inside a guest or a lab host, never on the host running hvbench:
``init.sh`` (the appliance's init), ``agent.sh`` (the guest agent), ``lab.sh`` (a lab host's
boot). The host side that builds images from them lives in ``hvbench.appliance``."""
