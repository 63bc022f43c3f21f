"""Apple Metal (metal)."""

from __future__ import annotations

from types import MappingProxyType

from buildtool.backends.base import Backend
from buildtool.records import HostFacts
from buildtool.toolchains.discovery import ToolSpec


class MetalBackend(Backend):
    family = "metal"
    finders = MappingProxyType({
        "xcrun": ToolSpec(("xcrun",), version_pattern=r"version (\d+)",
                          install="Xcode command line tools (xcode-select --install); Metal "
                                  "needs a macOS host"),
    })
    tools = ("xcrun",)
    platform_hint = "Metal needs a macOS arm64 host (in CI: a macos-14 runner)"
    wheel_oses = ("macos",)
    ci_builds_on_target = True  # the macos-14 runner is Apple silicon
    module_file = "libggml-metal.so"
    gpu_vendors = ("Apple",)

    def host_fit(self, host: HostFacts) -> str | None:
        return None if host.platform.startswith("macos") else "Metal needs macOS"


BACKEND = MetalBackend()
