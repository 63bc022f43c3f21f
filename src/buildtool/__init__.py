"""buildtool: turn a pinned llama.cpp tree into proven, hardware-specific artifacts."""

from __future__ import annotations

__version__ = "0.1.0"
