"""Apple Metal (metal)."""

from __future__ import annotations

from buildtool.backends.base import Backend
from buildtool.records import HostFacts


class MetalBackend(Backend):
    family = "metal"
    tools = ("xcrun",)
    platform_hint = "Metal needs a macOS arm64 host (in CI: a macos-14 runner)"
    wheel_oses = ("macos",)
    ci_builds_on_target = True  # the macos-14 runner is Apple silicon
    module_file = "libggml-metal.so"
    gpu_vendors = ("Apple",)

    def host_fit(self, host: HostFacts) -> str | None:
        return None if host.platform.startswith("macos") else "Metal needs macOS"
