"""The default comparison is decided by trying KVM for real, and the verdict is cached."""

from __future__ import annotations

import json
import os

import pytest

from hvbench.appliance import image
from hvbench.platforms.choose import default_platforms, kvm_usable


@pytest.mark.slow
def test_default_comparison_follows_a_real_kvm_boot() -> None:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        usable, why = kvm_usable()
        assert not usable and "/dev/kvm" in why
        assert default_platforms() == ["native", "qemu-tcg"]
        return
    messages: list[str] = []
    usable, why = kvm_usable(messages.append)
    cached = json.loads((image.cache_root() / "kvm-verdict.json").read_text())
    assert cached["usable"] == usable and cached["why"] == why
    assert default_platforms() == ["native", "qemu-kvm" if usable else "qemu-tcg"]
    if not usable:
        assert "did not boot under KVM" in why
