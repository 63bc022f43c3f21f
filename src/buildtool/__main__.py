from __future__ import annotations

from buildtool.cli import main

main()
